"""The watched folder, with real files appearing, growing, being renamed, replaced and deleted, the real
watcher (watchfiles on inotify) and real transcription of short real recordings."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path


from pipeline import audit
from pipeline.audio import sha256_file
from pipeline.store import Library
from pipeline.watch import watch

from .conftest import ROOT, SAMPLES, real

SHORT = SAMPLES / "librispeech-1995-1837-0001.wav"


def _until(predicate, what: str, seconds: float = 180):
    deadline = time.monotonic() + seconds
    while not (found := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return found


class Watching:
    """The watcher in a thread over one folder, recording what it did."""

    def __init__(self, root: Path, embedder, folder: Path):
        self.root, self.embedder, self.folder = root, embedder, folder
        self.files, self.changes, self.stop, self.ready = [], [], threading.Event(), threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            lib = Library(self.root, self.embedder.name)  # its SQLite connection belongs to this thread
            watch([self.folder], lambda fn: fn(lib, self.embedder), self.stop, settle=2.0,
                  on_file=self.files.append, on_change=self.changes.append, ignore=lib.root,
                  on_ready=self.ready.set)
        except BaseException as e:  # surfaced by the test, not lost in the thread
            self.error = e

    def __enter__(self):
        self.thread.start()
        _until(lambda: self.ready.is_set() or self.error, "the catch-up pass")
        assert self.error is None, self.error
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the watcher did not stop"
        assert self.error is None, self.error

    def result(self, path: Path, status: str):
        return _until(lambda: next((r for r in self.files if r.path == path and r.status == status), None)
                      or self.error, f"{status} {path.name}")

    def change(self, action: str, sha: str):
        return _until(lambda: next((c for c in self.changes if c.action == action and c.sha256 == sha), None)
                      or self.error, f"{action} of {sha[:12]}")


def catalog(root: Path) -> dict[str, sqlite3.Row]:
    """The catalog's recordings by hash, read as another process would."""
    with sqlite3.connect(root / "catalog.sqlite") as db:
        db.row_factory = sqlite3.Row
        return {r["sha256"]: r for r in db.execute("SELECT * FROM recordings")}


def _events(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "audit.jsonl").read_text().splitlines()]


def test_a_watched_folder_follows_new_growing_renamed_replaced_and_deleted_files(tmp_path, embedder):
    folder, root = tmp_path / "inbox", tmp_path / "library"
    folder.mkdir()
    first = folder / "first.flac"
    shutil.copy(SAMPLES / "jfk-inaugural-1961-excerpt.flac", first)  # there before the watcher starts

    with Watching(root, embedder, folder) as w:
        assert [r.status for r in w.files if r.path == first] == ["ingested"]  # caught up on start
        jfk = sha256_file(first)

        # A file that grows for longer than the settle time in all, in pieces closer together than it.
        growing = folder / "growing.wav"
        data = SHORT.read_bytes()
        with open(growing, "wb") as out:
            for k in range(6):
                out.write(data[k * len(data) // 6:(k + 1) * len(data) // 6])
                out.flush()
                time.sleep(0.9)  # longer than a look (TICK_MS), shorter than the settle time
        done = w.result(growing, "ingested")
        assert done.sha256 == sha256_file(SHORT)
        assert [r.status for r in w.files if r.path == growing] == ["ingested"], "a partial file was ingested"

        # Renamed: the catalog follows it, nothing is transcribed again.
        renamed = folder / "sub" / "renamed.wav"
        renamed.parent.mkdir()
        growing.rename(renamed)
        w.change("move", done.sha256)
        assert catalog(root)[done.sha256]["path"] == str(renamed.resolve())
        assert not [r for r in w.files if r.path == renamed and r.status == "ingested"]

        # Replaced with other content: the new content is ingested and the old recording retired.
        tmp = folder / ".incoming"
        shutil.copy(real("librispeech-1272-128104-0000.wav"), tmp)
        os.replace(tmp, renamed)
        w.result(renamed, "ingested")
        w.change("retire", done.sha256)
        assert done.sha256 not in catalog(root)
        assert (root / "deleted" / done.sha256).is_dir()  # its transcripts kept for review

        # Deleted: its recording is retired.
        first.unlink()
        w.change("retire", jfk)
        assert jfk not in catalog(root)

    assert [(r["file_name"], r["path"], r["status"]) for r in catalog(root).values()] == [
        ("renamed.wav", str(renamed.resolve()), "indexed")]
    events = _events(root)
    assert [e["event"] for e in events] == ["ingest", "ingest", "move", "ingest", "delete", "delete"]
    assert events[4]["reason"].startswith("its file was replaced") and "vanished" in events[5]["reason"]
    assert audit.verify_audit(root).ok
    # Both indexes hold the one recording left, and nothing of the retired ones.
    (sha, row), = catalog(root).items()
    with sqlite3.connect(root / "catalog.sqlite") as db:
        assert db.execute("SELECT DISTINCT file_hash FROM passages").fetchall() == [(sha,)]
        db.execute("INSERT INTO passages_fts (passages_fts, rank) VALUES ('integrity-check', 1)")
    assert Library(root).index.count() == row["passages"] > 0


def test_a_watcher_that_was_down_catches_up_on_start(tmp_path, embedder):
    folder, root = tmp_path / "inbox", tmp_path / "library"
    folder.mkdir()
    kept, gone, moved = folder / "kept.wav", folder / "gone.flac", folder / "moved.wav"
    shutil.copy(SHORT, kept)
    shutil.copy(SAMPLES / "jfk-inaugural-1961-excerpt.flac", gone)
    with Watching(root, embedder, folder):
        pass
    # While nobody watched: one file deleted, one renamed, one added.
    gone_sha = sha256_file(gone)
    gone.unlink()
    kept.rename(moved)
    added = folder / "added.wav"
    shutil.copy(real("librispeech-1272-128104-0000.wav"), added)

    with Watching(root, embedder, folder) as w:
        pass
    assert [(r.path.name, r.status) for r in w.files] == [("added.wav", "ingested"), ("moved.wav", "skipped")]
    assert sorted((c.action, c.file) for c in w.changes) == [("move", "kept.wav"), ("retire", "gone.flac")]
    assert {r["file_name"]: Path(r["path"]).name for r in catalog(root).values()} == {
        "kept.wav": "moved.wav", "added.wav": "added.wav"}
    assert gone_sha not in catalog(root)
    assert audit.verify_audit(root).ok


def test_earmark_watch_from_the_command_line(tmp_path):
    """The command itself: it says when it is watching, prints a line per file, and stops on SIGTERM."""
    folder, root = tmp_path / "inbox", tmp_path / "library"
    folder.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "watch", str(folder), "--library", str(root),
                             "--settle", "0.5", "--no-diarize"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out: list[str] = []
    err: list[str] = []
    for stream, into in ((proc.stdout, out), (proc.stderr, err)):
        threading.Thread(target=lambda s=stream, i=into: i.extend(iter(s.readline, "")), daemon=True).start()
    try:
        _until(lambda: any(line.startswith("watching ") for line in err) or proc.poll() is not None,
               "earmark watch to start")
        assert proc.poll() is None, "".join(err)
        shutil.copy(SHORT, folder / "new recording.wav")
        _until(lambda: out or proc.poll() is not None, "a line about the new file")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, "".join(err)
    assert out[0].startswith("ok    new recording.wav  "), out
    assert [r["status"] for r in catalog(root).values()] == ["indexed"]


def test_watch_refuses_a_file(tmp_path, run_cli):
    f = tmp_path / "x.wav"
    shutil.copy(SHORT, f)
    code, _, err = run_cli("watch", str(f))
    assert code == 2 and "is a file" in err
