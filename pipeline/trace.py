"""Stage boundaries of ingest, for tests that kill an ingest at a chosen moment (eval/reliability/crash.py).

With ``EARMARK_TRACE=/path/file`` set, every stage appends ``<unix time> <pid> <stage> begin|end <file>``
to that file, one ``write`` on an O_APPEND descriptor per line (so worker processes interleave whole
lines). Unset, ``stage`` is a no-op context manager: tracing costs one dictionary lookup per stage.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager, nullcontext

STAGES = ("decode+vad", "transcribe", "diarize", "embed", "store-chroma", "store-fts", "catalog", "audit")
# Stages that only compute (no write to the library): holding them at their start is as good as mid-way.
COMPUTE = ("decode+vad", "transcribe", "diarize", "embed")
_NULL = nullcontext()


def _line(stage: str, edge: str, name: str) -> None:
    path = os.environ.get("EARMARK_TRACE")
    if not path:
        return
    text = f"{time.time():.6f} {os.getpid()} {stage} {edge} {name}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text)  # unbuffered: a SIGKILL right after still leaves the line on disk
    finally:
        os.close(fd)


@contextmanager
def _traced(stage: str, name: str):
    _line(stage, "begin", name)
    if stage in COMPUTE:
        point(stage, name)  # no inner point to hold: a held kill lands at its start, still inside it
    try:
        yield
    finally:  # a stage that raised (StopIteration ending the decode, a bad file) is over too; only a kill leaves it open
        _line(stage, "end", name)


def stage(stage: str, name: str):
    """A context manager around one stage of one file (`name`: its file name, no spaces needed)."""
    if not os.environ.get("EARMARK_TRACE"):
        return _NULL
    return _traced(stage, name.replace(" ", "_"))


def point(stage: str, name: str) -> None:
    """A moment inside a stage where a kill is worth landing (between two writes of one stage).

    ``EARMARK_TRACE_PAUSE=STAGE:SECONDS`` holds each point of that stage for SECONDS, so a kill can be
    aimed inside a stage that otherwise lasts a millisecond (the audit line's fsync and the catalog's
    head, the Chroma delete and its upsert). Only with EARMARK_TRACE set; never in normal use."""
    if not os.environ.get("EARMARK_TRACE"):
        return
    _line(stage, "point", name.replace(" ", "_"))
    pause = os.environ.get("EARMARK_TRACE_PAUSE", "")
    want, _, seconds = pause.partition(":")
    if want == stage and seconds:
        time.sleep(float(seconds))
