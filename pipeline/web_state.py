"""What the routes of `earmark serve` share: the worker threads that own the library, the server's state,
who may call the API (the token), and the /api router with its typed recording id. web.py builds the app
and holds the routes of the library and its questions; web_summary.py those of summaries.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi import Path as PathParam

from .config import EmbedOptions, ServeOptions
from .web_jobs import AskQueue, Jobs

SHA256 = r"^[0-9a-f]{64}$"  # a recording id; nothing else from a request names a recording
# Upload limits (web.upload): size, time, and how many at once.
MAX_UPLOAD = 500 * 1024 * 1024  # bytes; a larger upload is refused with 413
UPLOAD_SECONDS = 600  # an upload still arriving after this is cut off with 408 (a slow-loris client)
UPLOADS_AT_ONCE = 2  # uploads being received at once; one more is told 503 (a slow client holds a slot)


class Worker:
    """One thread that owns a Library and an embedder; `call(fn)` runs fn(library, embedder) there."""

    def __init__(self, library_dir: Path, embed_model: str | None, name: str):
        self.library_dir, self.embed_model = Path(library_dir), embed_model
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._opened = None

    def _open(self):
        if self._opened is None:
            from .embed import load as load_embedder
            from .store import Library

            lib = Library(self.library_dir, self.embed_model)
            self._opened = (lib, load_embedder(EmbedOptions(model=lib.embed_model)))
        return self._opened

    def submit(self, fn: Callable):
        return self.pool.submit(lambda: fn(*self._open()))

    def call(self, fn: Callable):
        return self.submit(fn).result()

    def stop(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class ServerState:
    """What the routes share: the library's workers, the settings, the ingest jobs and the ask queue."""

    library_dir: Path
    options: ServeOptions
    reader: Worker  # catalog, search, transcripts, clips
    answerer: Worker  # asks, one at a time (the model is one llama.cpp context)
    ingester: Worker  # ingest jobs
    # Summaries, one at a time. Each of its model calls takes the model between two asks (llm.py's
    # lock), so a question waits for one chapter's call, not for a whole hour's summary.
    summarizer: Worker
    asks: AskQueue
    roots: list[Path]  # resolved --ingest-root folders
    jobs: Jobs = field(default_factory=Jobs)
    verified: dict[str, tuple] = field(default_factory=dict)  # sha -> (size, mtime) of an original found intact
    stopping: threading.Event = field(default_factory=threading.Event)  # set on shutdown: asks and ingest stop
    uploads: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(UPLOADS_AT_ONCE))
    summaries: dict[str, str] = field(default_factory=dict)  # id -> "making", or why making it failed
    summaries_lock: threading.Lock = field(default_factory=threading.Lock)

    def shutdown(self) -> None:
        """Stop what runs in the background so the process can exit now (SIGTERM), not after the ingest."""
        self.stopping.set()
        for w in (self.reader, self.answerer, self.ingester, self.summarizer):
            w.stop()


def server_state(request: Request) -> ServerState:
    return request.app.state.earmark


def authorized(request: Request) -> None:
    """With a token: `Authorization: Bearer T`, or the page's same-site cookie (an <audio> sends no headers).
    Both sides are hashed before the constant-time comparison, so not even the token's length leaks."""
    token = server_state(request).options.token
    if not token:
        return
    header = request.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else request.cookies.get("earmark_token", "")
    if not hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(token.encode()).digest()):
        raise HTTPException(401, "missing or wrong token: send 'Authorization: Bearer TOKEN'",
                            headers={"WWW-Authenticate": "Bearer"})


def api_router() -> APIRouter:
    """A router of /api routes, each behind the token check (web.py and web_summary.py have one each)."""
    return APIRouter(prefix="/api", dependencies=[Depends(authorized)])


State = Annotated[ServerState, Depends(server_state)]
RecordingId = Annotated[str, PathParam(pattern=SHA256, description="the recording's SHA-256")]


def recording_or_404(lib, sha: str):
    rec = lib.recording(sha)
    if rec is None:
        raise HTTPException(404, f"no recording {sha[:12]}… in this library")
    return rec
