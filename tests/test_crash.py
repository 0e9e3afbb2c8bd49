"""Crash safety and one writer at a time (issue 22 parts 1 and 2).

The repairs each get a test of their own on the state a kill -9 leaves (made here directly); then real
kill -9 trials of the reliability suite (eval/reliability/crash.py) on short real recordings, aimed at
the stages where a kill lands while a file is being stored, and two ingests started together.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from pipeline import audit, custody
from pipeline.audio import sha256_file
from pipeline.lock import WriteLock
from pipeline.store import Library
from tests.conftest import ROOT, real
from tests.test_store import _transcript


def _entries(root) -> list[dict]:
    return [json.loads(line) for line in (root / "audit.jsonl").read_text().splitlines()]


def test_an_audit_entry_written_but_not_yet_in_the_catalog_head_is_recorded_by_the_next_writer(tmp_path, monkeypatch):
    lib = Library(tmp_path, "m")
    audit.log_event(tmp_path, "setting", name="x", value=1)
    real_set_head = audit._set_head
    monkeypatch.setattr(audit, "_set_head", lambda root, head: None)  # killed between fsync and the head
    audit.log_event(tmp_path, "setting", name="x", value=2)
    monkeypatch.setattr(audit, "_set_head", real_set_head)
    check = audit.verify_audit(tmp_path)
    assert not check.ok and "not yet recorded in the catalog" in check.problems[0][1]
    with lib.writing():
        pass
    assert audit.verify_audit(tmp_path).ok


def test_the_head_is_not_moved_over_a_log_that_was_cut_or_edited(tmp_path):
    lib = Library(tmp_path, "m")
    for v in range(3):
        audit.log_event(tmp_path, "setting", name="x", value=v)
    log = tmp_path / "audit.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:1]))  # two entries cut off the end
    with lib.writing():
        pass
    assert not audit.verify_audit(tmp_path).ok


def test_temp_files_left_by_a_killed_write_are_removed_by_the_next_writer(tmp_path):
    lib = Library(tmp_path, "m")
    stale = tmp_path / "transcripts" / f".{'ab' * 32}.json.x1y2.tmp"
    stale.write_bytes(b"half a transcript")
    with lib.writing():
        pass
    assert not stale.exists()


def _holder(library, seconds: float) -> subprocess.Popen:
    """Another process holding the library's writer lock for `seconds`, once it says it holds it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pipeline.lock import WriteLock; "
         "l = WriteLock(sys.argv[1]); l.acquire(); print('held', flush=True); time.sleep(float(sys.argv[2]))",
         str(library), str(seconds)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_writer_waits_and_says_once_who_holds_the_library(tmp_path):
    holder = _holder(tmp_path, 1.5)
    said: list[str] = []
    t = time.monotonic()
    with WriteLock(tmp_path, on_wait=said.append):
        waited = time.monotonic() - t
    holder.wait()
    assert waited > 0.5
    assert said == [f"library {tmp_path} is busy: another earmark (pid {holder.pid}) is writing; waiting…"]


def test_a_writer_killed_with_sigkill_leaves_no_lock_behind(tmp_path):
    holder = _holder(tmp_path, 60)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    said: list[str] = []
    with WriteLock(tmp_path, on_wait=said.append):
        pass
    assert said == []


def _interrupted(tmp_path, name="librispeech-1272-128104-0000.wav"):
    """A real recording and a library holding only its saved transcript, as a kill right after
    saving it leaves (the transcript's text is made up: ingest must use it, not transcribe again)."""
    audio = tmp_path / name
    shutil.copy(real(name), audio)
    lib = Library(tmp_path / "library", "multilingual-e5-small")
    t = _transcript("Mister Quilter is the apostle of the middle classes.")
    t = type(t)(**{**t.__dict__, "file_hash": sha256_file(audio), "file_name": name})
    lib.save_transcript(t)
    return audio, lib, t


def test_a_transcript_saved_before_a_kill_is_catalogued_not_transcribed_again_or_versioned(tmp_path, embedder):
    from pipeline.ingest import IngestOptions, ingest

    audio, lib, t = _interrupted(tmp_path)
    report = ingest(lib, embedder, [audio], IngestOptions(diarize=False))
    assert [r.status for r in report.results] == ["ingested"]
    assert sorted(p.name for p in (lib.root / "transcripts").iterdir()) == [f"{t.file_hash}.json"]
    assert lib.transcript(t.file_hash).segments[0].text == t.segments[0].text
    assert lib.recording(t.file_hash).status == "indexed"


def test_an_ingest_killed_after_its_audit_entry_does_not_log_a_second_one(tmp_path, embedder):
    from pipeline.ingest import IngestOptions, ingest

    audio, lib, t = _interrupted(tmp_path)
    lib.upsert_recording(t.file_hash, file_name=audio.name, path=str(audio), size=audio.stat().st_size,
                         duration=t.duration, status="transcribed", languages=["en"], transcribe_model={})
    audit.log_event(lib.root, "ingest", file=audio.name, sha256=t.file_hash, path=str(audio),
                      size=audio.stat().st_size, speakers=None)  # then killed before "indexed"
    ingest(lib, embedder, [audio], IngestOptions(diarize=False))
    assert [e["event"] for e in _entries(lib.root)] == ["ingest"]
    assert lib.recording(t.file_hash).status == "indexed"
    # Deleted and ingested again, it is logged again.
    custody.delete_recording(lib, lib.recording(t.file_hash))
    ingest(lib, embedder, [audio], IngestOptions(diarize=False))
    assert [e["event"] for e in _entries(lib.root)] == ["ingest", "delete", "ingest"]


# --- the reliability suite's kill -9 trials, on real recordings ----------------------------------
@pytest.fixture(scope="module")
def crash_ctx(tmp_path_factory):
    from earmark_eval.reliability import crash
    from earmark_eval.reliability.part import Context

    for name in crash.QUICK_FILES:
        real(name)
    ctx = Context(out=tmp_path_factory.mktemp("crash"), audio=real(crash.QUICK_FILES[0]).parent, quick=True,
                  progress=lambda msg: None, earmark=(str(ROOT / ".venv" / "bin" / "earmark"),))
    folder = crash._folder(ctx)
    return ctx, folder, crash._clean(ctx, folder, ask=False)  # ask (the LLM) is the suite's, too slow here


@pytest.mark.parametrize("stage", ["transcribe", "store-chroma"])
def test_a_kill_9_during_a_stage_then_the_same_ingest_gives_the_clean_library(crash_ctx, stage):
    from earmark_eval.reliability import crash

    ctx, folder, clean = crash_ctx
    row = crash.trial(ctx, crash.STAGES.index(stage), folder, clean, clean["trace"], ask=False)
    assert row["hit"], f"the kill aimed at {stage} landed in {row['landed']}"
    assert row["passed"], row["problems"]


def test_two_ingests_at_once_both_finish_and_give_the_clean_library(crash_ctx):
    from earmark_eval.reliability import crash

    ctx, folder, clean = crash_ctx
    files = sorted(p for p in folder.iterdir() if p.suffix not in crash.SIDECARS)
    result = crash.two_writers(ctx, files, clean)
    assert result["ok"], result["problems"]
    assert result["exit_codes"] == [0, 0]


def test_a_file_half_written_by_a_killed_process_is_removed_when_it_is_written_again(tmp_path):
    """A model in the cache, or a transcript in a library: one writer (pipeline.atomic) serves both."""
    from pipeline.atomic import atomic_writer, write_atomic

    dest = tmp_path / "model.bin"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".model.bin.{dead.pid}.abcd1234.tmp"
    stale.write_bytes(b"half a model")
    live = tmp_path / f".model.bin.{os.getpid()}.ef567890.tmp"  # a writer still at work: kept
    live.write_bytes(b"being written")
    with atomic_writer(dest) as fh:
        fh.write(b"whole")
    assert dest.read_bytes() == b"whole" and not stale.exists() and live.exists()
    transcript = tmp_path / "transcripts" / "abc.json"
    left = transcript.parent / f".abc.json.{dead.pid}.0badc0de.tmp"
    transcript.parent.mkdir()
    left.write_bytes(b"{half")
    write_atomic(transcript, b"{}")
    assert transcript.read_bytes() == b"{}" and not left.exists()
    assert transcript.stat().st_mode & 0o777 == 0o600  # a library's files are its owner's
