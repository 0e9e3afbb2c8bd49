"""`earmark serve`: a local web page and JSON API over a library. Like the CLI, an edge: every route
calls the same library functions (search, ask, ingest, clip); none holds pipeline logic.

The catalog is one SQLite connection and the answerer is one llama.cpp model, neither of which may be
used from two threads, so all library work runs on one worker thread (`_Worker`); ingest jobs run on a
second, with a library handle of their own, so a long ingest does not hold up questions.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import queue
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.background import BackgroundTask

from .config import AnswerOptions, EmbedOptions
from .errors import ConfigError, CustodyError, EarmarkError, RangeError

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
SHA256 = r"^[0-9a-f]{64}$"  # a recording id; nothing else from a request names a recording
MAX_UPLOAD = 500 * 1024 * 1024  # bytes; a larger upload is refused with 413


def bind_allowed(host: str, token: str | None) -> bool:
    """Whether serving on `host` is safe: loopback always, any other address only behind a token."""
    if token:
        return True
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name that is not localhost may resolve to anything


def serve(library_dir: Path, embed_model: str | None, host: str, port: int, token: str | None) -> None:
    """Run the web app with uvicorn; refuses a non-loopback address without a token."""
    if not bind_allowed(host, token):
        raise ConfigError(f"refusing to serve on {host} without a token: pass --token or set EARMARK_TOKEN "
                          "(or bind 127.0.0.1)")
    import uvicorn

    app = create_app(library_dir, embed_model, token)
    app.state.earmark.worker.call(lambda lib, embedder: None)  # a library that cannot open fails here, in one line
    uvicorn.run(app, host=host, port=port, log_level="info")


class _Worker:
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


@dataclass
class IngestJob:
    """An ingest running in the background, as `GET /api/ingest/{job}` reports it."""

    id: str
    paths: list[str]
    status: str = "queued"  # queued | running | done | failed
    done: int = 0
    files: list[dict] = field(default_factory=list)
    message: str = ""

    def to_json(self) -> dict:
        return {"job": self.id, "status": self.status, "total": len(self.paths), "done": self.done,
                "files": self.files, "message": self.message}


class Question(BaseModel):
    question: str
    mode: str = "hybrid"  # retrieval mode, as `earmark search --mode`
    file: str | None = None  # only recordings whose name matches this glob


class IngestPath(BaseModel):
    path: str  # a file or folder on the server


def _recording_json(r) -> dict:
    return {"file": r.file_name, "id": r.sha256, "duration": r.duration, "languages": r.languages,
            "status": r.status, "passages": r.passages}


def _hit_json(h) -> dict:
    return {**h.to_json(), "recording": h.file_hash}


def _answer_json(lib, answer) -> dict:
    data = answer.to_json()
    for c, j in zip(answer.citations, data["citations"]):
        j["recording"] = c.file_hash or lib.find(c.file).sha256
    return data


def create_app(library_dir: Path, embed_model: str | None = None, token: str | None = None) -> FastAPI:
    """The earmark web app over one library; with a token, every /api request must carry it."""
    app = FastAPI(title="earmark", description="Ask questions of your recordings; answers cite the exact second.",
                  version=_version())
    app.state.earmark = _State(Path(library_dir), token or None, _Worker(library_dir, embed_model, "earmark-library"),
                               _Worker(library_dir, embed_model, "earmark-ingest"))
    app.add_exception_handler(EarmarkError, _earmark_error)
    app.include_router(router)
    app.mount("/", StaticFiles(directory=STATIC, html=True), name="page")
    return app


@dataclass
class _State:
    """What the routes share: the library's workers, the token, the ingest jobs."""

    library_dir: Path
    token: str | None
    worker: _Worker  # all catalog, search and answering work
    ingester: _Worker  # ingest jobs, on a library handle of their own
    jobs: dict[str, IngestJob] = field(default_factory=dict)
    verified: dict[str, tuple] = field(default_factory=dict)  # sha -> (size, mtime) of an original found intact


def _state(request: Request) -> _State:
    return request.app.state.earmark


def _authorized(request: Request) -> None:
    """With a token: `Authorization: Bearer T`, or the page's same-site cookie (an <audio> sends no headers)."""
    token = _state(request).token
    if token is None:
        return
    header = request.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else request.cookies.get("earmark_token", "")
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise HTTPException(401, "missing or wrong token: send 'Authorization: Bearer TOKEN'",
                            headers={"WWW-Authenticate": "Bearer"})


router = APIRouter(prefix="/api", dependencies=[Depends(_authorized)])
State = Annotated[_State, Depends(_state)]
RecordingId = Annotated[str, PathParam(pattern=SHA256, description="the recording's SHA-256")]


def _earmark_error(request: Request, e: EarmarkError) -> JSONResponse:
    status = 400 if isinstance(e, RangeError) else 409 if isinstance(e, CustodyError) else 500
    return JSONResponse({"detail": str(e)}, status_code=status)


def _recording(lib, sha: str):
    rec = lib.recording(sha)
    if rec is None:
        raise HTTPException(404, f"no recording {sha[:12]}… in this library")
    return rec


def _intact_original(lib, verified: dict, sha: str) -> Path:
    """The original's path, re-hashed only when its size or mtime moved since it was last checked."""
    from .custody import require_intact

    rec = _recording(lib, sha)
    path = Path(rec.path)
    stat = path.stat() if path.is_file() else None
    key = (stat.st_size, stat.st_mtime_ns) if stat else None
    if key is None or verified.get(sha) != key:
        require_intact(rec)
        verified[sha] = key
    return path


@router.get("/recordings")
def recordings(st: State) -> dict:
    """Every recording: file, id (SHA-256), duration, languages, status, passages."""
    return {"recordings": st.worker.call(lambda lib, _: [_recording_json(r) for r in lib.recordings()])}


@router.get("/recordings/{rid}/transcript")
def transcript(st: State, rid: RecordingId) -> dict:
    """The recording's transcript: segments with times, words and speakers."""
    def run(lib, _):
        _recording(lib, rid)
        return {"id": rid, **lib.transcript(rid).to_dict()}
    return st.worker.call(run)


@router.get("/recordings/{rid}/audio")
def audio(st: State, rid: RecordingId) -> FileResponse:
    """The original file, as ingested; supports HTTP Range so a player can seek."""
    path = st.worker.call(lambda lib, _: _intact_original(lib, st.verified, rid))
    return FileResponse(path, filename=path.name, content_disposition_type="inline")


@router.get("/recordings/{rid}/clip")
def clip(st: State, rid: RecordingId, start: float = Query(..., ge=0), end: float = Query(..., gt=0)) -> FileResponse:
    """A WAV clip of [start, end) seconds cut sample-exact from the original, as `earmark clip`."""
    from .clips import clip as cut

    folder = Path(tempfile.mkdtemp(prefix="earmark-clip-"))
    try:
        def run(lib, _):
            rec = _recording(lib, rid)
            out = folder / f"{Path(rec.file_name).stem}-{start:.2f}-{end:.2f}.wav"
            return out, cut(lib, rec, start, end, out)
        out, manifest = st.worker.call(run)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(out, media_type="audio/wav", filename=out.name,
                        headers={"X-Earmark-Clip-Sha256": manifest["clip_sha256"]},
                        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True))


@router.get("/search")
def search(st: State, q: str = Query(..., min_length=1),
           mode: str = Query("hybrid", pattern="^(hybrid|dense|lexical)$"),
           k: int = Query(10, ge=1, le=100), exact: bool = False) -> dict:
    """Passages best matching q (as `earmark search --json`), each with its recording id."""
    from .search import SearchOptions
    from .search import exact as run_exact
    from .search import search as run_search

    if not q.strip():
        raise HTTPException(422, "the query is empty")
    options = SearchOptions(k=k, mode=mode)
    hits = st.worker.call(lambda lib, emb: run_exact(lib, q, options) if exact else run_search(lib, emb, q, options))
    return {"hits": [_hit_json(h) for h in hits]}


@router.post("/ask")
def ask(st: State, body: Question) -> StreamingResponse:
    """Stream the answer as NDJSON: `{"event":"token","text":...}` lines while the model writes, then
    one `{"event":"answer", ...}` line with the JSON of `earmark ask --json` (+ recording ids)."""
    if not body.question.strip():
        raise HTTPException(422, "the question is empty")
    return StreamingResponse(_ask_stream(st.worker, body), media_type="application/x-ndjson")


@router.post("/ingest", status_code=202)
async def ingest(st: State, request: Request) -> dict:
    """Ingest an uploaded file (multipart field `file`, up to 500 MB) or `{"path": ...}` on the server;
    returns a job id to follow at GET /api/ingest/{job}."""
    job_id = uuid.uuid4().hex[:12]
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        paths = [str(await _save_upload(request, st.library_dir / "uploads" / job_id))]
    else:
        try:
            paths = [IngestPath.model_validate(await request.json()).path]
        except ValueError as e:
            raise HTTPException(422, 'send a multipart "file" or JSON {"path": "..."}') from e
        if not Path(paths[0]).exists():
            raise HTTPException(404, f"{paths[0]}: no such file or folder on the server")
    job = st.jobs[job_id] = IngestJob(job_id, paths)
    st.ingester.submit(lambda lib, emb: _run_ingest(lib, emb, job))
    return job.to_json()


@router.get("/ingest/{job}")
def ingest_progress(st: State, job: str) -> dict:
    """Progress of an ingest job: status, files done of total, per-file results."""
    if job not in st.jobs:
        raise HTTPException(404, f"no ingest job {job!r}")
    return st.jobs[job].to_json()


def _version() -> str:
    from . import __version__

    return __version__


def _ask_stream(worker: _Worker, body: Question) -> Iterator[bytes]:
    """Run ask() on the worker and yield its answer tokens, then the checked answer, as NDJSON lines."""
    from .answer import ask as run_ask
    from .llm import FieldStream
    from .search import SearchOptions

    lines: queue.Queue = queue.Queue()
    field_ = FieldStream("answer")

    def on_token(text: str) -> None:
        new = field_.feed(text)
        if new:
            lines.put({"event": "token", "text": new})

    def run(lib, emb):
        try:
            answer = run_ask(lib, emb, body.question, AnswerOptions(),
                             SearchOptions(mode=body.mode, file=body.file), on_token=on_token)
            lines.put({"event": "answer", **_answer_json(lib, answer)})
        except EarmarkError as e:
            lines.put({"event": "error", "detail": str(e)})
        except Exception as e:  # the stream has begun: the error must travel inside it
            log.exception("ask failed")
            lines.put({"event": "error", "detail": f"unexpected {type(e).__name__}: {e}"})
        finally:
            lines.put(None)

    worker.submit(run)
    while (line := lines.get()) is not None:
        yield (json.dumps(line, ensure_ascii=False) + "\n").encode()


async def _save_upload(request: Request, folder: Path) -> Path:
    """Store the multipart `file` under folder, keeping only a sanitised base name; 413 past MAX_UPLOAD."""
    if int(request.headers.get("content-length") or 0) > MAX_UPLOAD + 1024 * 1024:
        raise HTTPException(413, f"upload larger than {MAX_UPLOAD // 2**20} MB")
    form = await request.form(max_part_size=MAX_UPLOAD + 1)
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise HTTPException(422, 'the multipart form has no "file"')
    name = re.sub(r"[^\w.\- ]", "_", Path(upload.filename or "upload").name).lstrip(".") or "upload"
    folder.mkdir(parents=True, exist_ok=True)
    out, size = folder / name, 0
    with out.open("wb") as f:
        while chunk := await upload.read(1 << 20):
            size += len(chunk)
            if size > MAX_UPLOAD:
                f.close()
                shutil.rmtree(folder, ignore_errors=True)
                raise HTTPException(413, f"upload larger than {MAX_UPLOAD // 2**20} MB")
            f.write(chunk)
    return out


def _run_ingest(lib, embedder, job: IngestJob) -> None:
    """Ingest a job's paths, recording each file's result on the job as it finishes."""
    from .ingest import ingest

    def on_file(r) -> None:
        job.done += 1
        job.files.append({"file": r.path.name, "status": r.status, "message": r.message, "recording": r.sha256})

    job.status = "running"
    try:
        report = ingest(lib, embedder, job.paths, on_file=on_file)
    except Exception as e:  # a batch boundary: the job records it, the server goes on
        log.exception("ingest job %s failed", job.id)
        job.status, job.message = "failed", str(e)
        return
    job.status = "failed" if report.failed else "done"
    job.message = f"{report.count('ingested')} ingested, {report.count('skipped')} skipped, {len(report.failed)} failed"
