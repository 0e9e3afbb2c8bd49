"""One writer at a time per library: an exclusive flock on LIBRARY/.write.lock.

Every command that changes the library (ingest, reindex, delete, speaker rename, redact, and the
server's ingest, which runs pipeline.ingest.ingest) takes it; readers (search, ask, status,
transcript, verify) never do: SQLite WAL and Chroma let them read while a writer writes. A second
writer waits for the first, saying once which process holds the library, so two ingests started
together run one after the other rather than one failing. flock (not a pid file) because the kernel
drops it when its holder dies, kill -9 included: a crashed writer never leaves a stale lock behind.

The lock is held per open file description, so two Library objects in one process (the server's
two workers) exclude each other too; within one Library it is re-entrant.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .errors import LibraryError

log = logging.getLogger(__name__)

LOCK_FILE = ".write.lock"
POLL = 0.2  # seconds between tries while another writer holds the library


def holder(root: Path) -> int | None:
    """The pid the lock file names (the last writer, or the current one while it is locked)."""
    try:
        return int((Path(root) / LOCK_FILE).read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


class WriteLock:
    """The library's writer lock; `with lock:` takes it (waiting for another writer), re-entrantly."""

    def __init__(self, root: Path, on_wait: Callable[[str], None] | None = None,
                 cancel: threading.Event | None = None):
        self.root = Path(root)
        self.on_wait = on_wait or log.warning
        self.cancel = cancel
        self.fd: int | None = None
        self.depth = 0

    def acquire(self) -> bool:
        """Take the lock; True if this call took it (False when already held here)."""
        if self.depth:
            self.depth += 1
            return False
        path = self.root / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise LibraryError(f"cannot open {path}: {e.strerror}; is the library folder writable?") from e
        said = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not said:
                    pid = holder(self.root)
                    self.on_wait(f"library {self.root} is busy: another earmark (pid {pid or '?'}) is "
                                 "writing; waiting…")
                    said = True
                if self.cancel is not None and self.cancel.is_set():
                    os.close(fd)
                    raise LibraryError(f"library {self.root} is busy; stopped waiting for it") from None
                time.sleep(POLL)  # polled rather than blocking, so a cancel (server shutdown) is seen
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd, self.depth = fd, 1
        return True

    def release(self) -> None:
        self.depth -= 1
        if self.depth == 0 and self.fd is not None:
            os.close(self.fd)  # closing drops the flock; the pid stays as the last writer's
            self.fd = None

    def __enter__(self) -> WriteLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
