"""Files written whole or not at all: readers see the old file or the new one, never a part.

One writer for the library (transcripts, summaries, clips, exports: private to the user, 0600) and the
models cache (shared like any download: the umask decides). The data goes to a temp file beside the
destination, is fsynced, and renamed over it only if the write succeeded. A temp file carries its
writer's pid, so one left by a kill -9 (as large as a model) is removed by the next write of that file.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

PRIVATE = 0o600  # a library's files: evidence, readable by its owner only
SHARED = 0o666  # the models cache: as the umask allows


@contextmanager
def atomic_writer(dest: Path, mode: int = PRIVATE) -> Iterator[IO[bytes]]:
    """A file object whose bytes become ``dest`` when the block ends without an exception."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(dest)
    tmp = dest.parent / f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes, mode: int = PRIVATE) -> None:
    """Write bytes whole or not at all (`atomic_writer`)."""
    with atomic_writer(path, mode) as fh:
        fh.write(data)


def remove_stale(dest: Path) -> None:
    """Delete temp files of ``dest`` whose writer is gone; a live writer's (its pid in the name) is kept."""
    for tmp in dest.parent.glob(f".{dest.name}.*.tmp"):
        pid = tmp.name[len(dest.name) + 2:].split(".")[0]
        if pid.isdigit() and not _alive(int(pid)):
            log.info("removing %s, left by an interrupted write", tmp)
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
