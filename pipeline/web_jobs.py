"""The server's background work, bounded: ingest jobs (uploads and server paths) and the ask queue.

- **Uploads** are written to `LIBRARY/uploads/.partial-JOB/` and renamed to `uploads/JOB/` only once
  whole, so a server killed mid-upload leaves nothing that looks like a recording; on start the
  partial folders are removed and complete uploads the catalog does not hold yet are ingested again
  (an interrupted ingest resumes). An upload that ends failed or skipped (its content was already
  there) is deleted; an ingested one stays, as the original the catalog's custody record points at.
- **Server paths** (`{"path": ...}`) are read only under the roots the operator named
  (`serve --ingest-root`); a path outside them, or a file under them that links outside, is refused
  the same way whether or not it exists, so the API is no oracle for the server's files.
- **Jobs** are kept in memory up to `MAX_JOBS` finished ones (oldest dropped first).
- **Asks** run one at a time on the answering model; at most `AskQueue.bound` may be running or
  waiting, and one more is told 503 with a Retry-After estimated from recent asks, never left hanging.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

MAX_JOBS = 100  # finished jobs remembered for GET /api/ingest/{job}
PARTIAL = ".partial-"


@dataclass
class IngestJob:
    """An ingest running in the background, as `GET /api/ingest/{job}` reports it."""

    id: str
    paths: list[str]
    upload: Path | None = None  # the job's upload folder, if it ingests an upload
    status: str = "queued"  # queued | running | done | failed | interrupted
    total: int | None = None  # files found, once the paths are walked
    done: int = 0
    files: list[dict] = field(default_factory=list)
    message: str = ""

    def to_json(self) -> dict:
        return {"job": self.id, "status": self.status,
                "total": self.total if self.total is not None else len(self.paths), "done": self.done,
                "files": self.files, "message": self.message}

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed", "interrupted")


class Jobs:
    """Ingest jobs by id, forgetting the oldest finished ones past MAX_JOBS."""

    def __init__(self):
        self._jobs: OrderedDict[str, IngestJob] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, job: IngestJob) -> IngestJob:
        with self._lock:
            self._jobs[job.id] = job
            finished = [k for k, j in self._jobs.items() if j.finished]
            for k in finished[:max(0, len(finished) - MAX_JOBS)]:
                del self._jobs[k]
        return job

    def get(self, job_id: str) -> IngestJob | None:
        return self._jobs.get(job_id)

    def __len__(self) -> int:
        return len(self._jobs)


def inside(path: Path, roots: list[Path]) -> bool:
    """Whether a path, its links followed, lies under one of the roots (also resolved)."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        real = Path(os.path.realpath(path))
    return any(real == r or r in real.parents for r in roots)


def finish_upload(job: IngestJob) -> None:
    """Delete an upload that did not become a recording (failed, skipped or interrupted is kept)."""
    if job.upload is None or job.status == "interrupted":
        return
    if not any(f["status"] == "ingested" for f in job.files):
        shutil.rmtree(job.upload, ignore_errors=True)


def leftover_uploads(uploads: Path, known_paths: set[str]) -> list[Path]:
    """Clear half-written uploads; return the folders of whole uploads no recording comes from."""
    if not uploads.is_dir():
        return []
    todo = []
    for folder in sorted(uploads.iterdir()):
        if folder.name.startswith(PARTIAL):
            shutil.rmtree(folder, ignore_errors=True)
        elif folder.is_dir() and not any(str(f.resolve()) in known_paths for f in folder.iterdir()):
            todo.append(folder)
    return todo


class Busy(Exception):
    """The ask queue is full; retry after `retry_after` seconds."""

    def __init__(self, retry_after: int, waiting: int):
        super().__init__(f"{waiting} questions are being answered or waiting; retry in {retry_after} s")
        self.retry_after = retry_after


class AskQueue:
    """Counts asks running or waiting on the answering model, refusing past `bound`."""

    def __init__(self, bound: int):
        self.bound = bound
        self._lock = threading.Lock()
        self._pending = 0
        self._seconds = 10.0  # a moving average of ask times, for Retry-After

    def enter(self) -> None:
        with self._lock:
            if self._pending >= self.bound:
                raise Busy(max(1, round(self._seconds * self._pending)), self._pending)
            self._pending += 1

    def leave(self, seconds: float | None) -> None:
        with self._lock:
            self._pending -= 1
            if seconds is not None:
                self._seconds = 0.8 * self._seconds + 0.2 * seconds

    @property
    def pending(self) -> int:
        return self._pending


class Stopped(Exception):
    """An ask was stopped: its client went away, it ran past its deadline, or the server is stopping."""


@dataclass
class AskTicket:
    """One ask's life: when it started, its deadline, and whether its client or the server gave up."""

    deadline: float  # time.monotonic() past which its generation is stopped
    server_stopping: threading.Event
    gone: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)

    def check(self) -> None:
        """Raise Stopped if the ask must not go on (called before it starts and on every token)."""
        if self.gone.is_set():
            raise Stopped("the client went away")
        if self.server_stopping.is_set():
            raise Stopped("the server is shutting down; ask again when it is back")
        if time.monotonic() > self.deadline:
            raise Stopped(f"no answer within {self.deadline - self.started:.0f} s; try a narrower question "
                          "or set EARMARK_ASK_TIMEOUT")
