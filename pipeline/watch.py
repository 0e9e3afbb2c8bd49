"""Watched folders: `earmark watch DIR...` and `earmark serve --watch DIR`.

Changes are reported by watchfiles (the Rust `notify` crate: inotify on Linux, FSEvents, ReadDirectoryChangesW),
not found by polling. A file is ingested once it has stopped growing: its size and mtime unchanged for
`settle` seconds (a copy, a download or a recorder still writing changes them). What the watcher does:

- **new file**: ingested, as `earmark ingest` would (content already in the library is skipped);
- **changed file** (same path, new content): the new content is ingested, then the recording of the old
  content is retired (see `custody.delete_recording`: its transcripts move to LIBRARY/deleted/, the
  audit log says why);
- **renamed or moved file** (same content at a new path under a watched folder): the catalog's path
  follows it and the audit log records a `move`; nothing is transcribed again, and the recording keeps
  the name it was ingested under, which its citations and passages carry;
- **vanished file**: its recording is retired, as a changed one.

Only recordings whose path lies under a watched folder are ever moved or retired; ones ingested from
elsewhere (uploads, other folders) are not the watcher's. Vanished files are looked at only when no new
file is still settling, so a rename is seen as a move, not as a retirement followed by a re-ingest.

Restart-safe: every start (and the catch-up pass) compares the folders with the catalog, so changes made
while no watcher ran are caught up. The library's writer lock is held only during a pass, so a manual
`earmark ingest` can run between passes.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import audio as audio_mod
from . import audit, custody
from .ingest import FileResult, IngestOptions, discover, ingest

log = logging.getLogger(__name__)

SETTLE_SECONDS = 2.0  # unchanged this long: the writer is done (a recorder flushes at least every second)
TICK_MS = 500  # how often, without events, settling files are looked at again


@dataclass
class Change:
    """What a pass did besides ingesting: a recording moved or retired, as the CLI prints it."""

    action: str  # "move" | "retire"
    file: str  # the recording's name as ingested
    sha256: str
    path: str  # its (old) path
    detail: str  # the new path, or why it was retired

    def to_json(self) -> dict:
        return {"action": self.action, "file": self.file, "id": self.sha256, "path": self.path,
                "detail": self.detail}


@dataclass
class PassReport:
    results: list[FileResult] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)


def _under(path: Path, folders: list[Path]) -> bool:
    return any(path == f or path.is_relative_to(f) for f in folders)


def sync(library, embedder, folders: Iterable[Path], options: IngestOptions = IngestOptions(),
         files: Iterable[Path] | None = None, look_for_gone: bool = True,
         on_file: Callable[[FileResult], None] | None = None,
         on_change: Callable[[Change], None] | None = None,
         cancel: threading.Event | None = None) -> PassReport:
    """One pass: ingest `files` (default: everything under `folders`), then move or retire the
    recordings under `folders` whose file is gone or now holds other content."""
    folders = [Path(f).resolve() for f in folders]
    report = PassReport()
    with library.writing(cancel=cancel):
        todo = discover(files if files is not None else folders)
        todo = [f for f in todo if not _under(f.resolve(), [library.root.resolve()])]  # never its own uploads
        if todo:
            report.results = ingest(library, embedder, todo, options, on_file=on_file, cancel=cancel).results
        if cancel is not None and cancel.is_set():
            return report
        seen = {r.path.resolve(): r.sha256 for r in report.results if r.sha256}
        for rec in library.recordings():
            path = Path(rec.path)
            if not _under(path, folders):
                continue
            now = seen.get(path)
            if now is None and (path.is_file() or not look_for_gone):
                continue  # not looked at in this pass, and still there (or its absence not yet weighed)
            if now == rec.sha256:
                continue
            elsewhere = [p for p, sha in seen.items() if sha == rec.sha256 and p != path] if now is None else []
            if now is None and not elsewhere and files is not None:  # a full pass has hashed every file
                elsewhere = _same_content_under(library, rec, folders)
            if elsewhere:
                change = Change("move", rec.file_name, rec.sha256, rec.path, str(elsewhere[0]))
                library.move_recording(rec.sha256, str(elsewhere[0]))
                audit.log_event(library.root, "move", file=rec.file_name, sha256=rec.sha256, path=rec.path,
                                  to=str(elsewhere[0]))
            else:
                why = ("its file vanished from a watched folder" if now is None else
                       f"its file was replaced by other content ({now[:12]}…)")
                change = Change("retire", rec.file_name, rec.sha256, rec.path, why)
                custody.delete_recording(library, rec, reason=why)
            report.changes.append(change)
            if on_change:
                on_change(change)
    return report


def _same_content_under(library, rec, folders: list[Path]) -> list[Path]:
    """Files under the folders, of the recording's size, that hold its content (a rename the events
    did not pair up, e.g. one made while no watcher ran and already skipped as known content)."""
    out = []
    for f in discover(folders):
        try:
            if f.stat().st_size == rec.size and audio_mod.sha256_file(f) == rec.sha256:
                out.append(f.resolve())
        except OSError:
            continue
    return out


class Settling:
    """Files that changed, until each has kept its size and mtime for `seconds`."""

    def __init__(self, seconds: float = SETTLE_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.seconds, self.clock = seconds, clock
        self._files: dict[Path, tuple[tuple[int, int] | None, float]] = {}

    def add(self, path: Path) -> None:
        self._files[path] = (None, self.clock())

    def discard(self, path: Path) -> None:
        self._files.pop(path, None)

    def __bool__(self) -> bool:
        return bool(self._files)

    def ready(self) -> list[Path]:
        """The files that have stopped changing (and leave the set); ones that vanished are dropped."""
        done = []
        for path, (before, since) in list(self._files.items()):
            try:
                st = path.stat()
            except OSError:
                self._files.pop(path)
                continue
            mark = (st.st_size, st.st_mtime_ns)
            if mark != before:
                self._files[path] = (mark, self.clock())
            elif self.clock() - since >= self.seconds:
                done.append(path)
                self._files.pop(path)
        return sorted(done)


def _wanted(path: Path) -> bool:
    return path.suffix.lower() in audio_mod.AUDIO_EXTENSIONS or path.is_dir()


def watch(folders: list[Path], run: Callable[[Callable], PassReport], stop: threading.Event,
          options: IngestOptions = IngestOptions(), settle: float = SETTLE_SECONDS,
          on_file: Callable[[FileResult], None] | None = None, on_change: Callable[[Change], None] | None = None,
          ignore: Path | None = None, on_ready: Callable[[], None] | None = None) -> None:
    """Catch up with `folders`, then keep them in the library until `stop` is set.

    `run(fn)` calls fn(library, embedder) where the library lives (the CLI: here; the server: its ingest
    worker); fn is a `sync` pass. `ignore` is a folder whose events are never looked at (the library);
    `on_ready` is called once the catch-up pass is done and events are being watched."""
    import watchfiles

    folders = [Path(f).resolve() for f in folders]
    for f in folders:
        if not f.is_dir():
            raise audio_mod.AudioError(f"{audio_mod.shown(f)}: not a folder; `earmark watch` watches folders "
                                       "(ingest single files with `earmark ingest`)")
    ignored = [ignore.resolve()] if ignore else []

    def one_pass(files, look_for_gone):
        run(lambda lib, emb: sync(lib, emb, folders, options, files=files, look_for_gone=look_for_gone,
                                  on_file=on_file, on_change=on_change, cancel=stop))

    events = watchfiles.watch(*folders, stop_event=stop, rust_timeout=TICK_MS, yield_on_timeout=True,
                              raise_interrupt=False)
    first = next(events, set())  # the watcher runs from here on: what changes during the catch-up is kept
    one_pass(None, True)  # catch up with what changed while nobody watched
    if on_ready is not None:
        on_ready()
    settling, gone = Settling(settle), False
    for changes in itertools.chain([first], events):
        for kind, name in changes:
            path = Path(name)
            if _under(path, ignored):
                continue
            if kind == watchfiles.Change.deleted:
                settling.discard(path)
                gone = True
            elif _wanted(path):
                settling.add(path)
        done = settling.ready()
        if stop.is_set():
            break
        if done or (gone and not settling):
            one_pass(done, look_for_gone=gone and not settling)
            gone = gone and bool(settling)
