"""`earmark serve`: a local web page and JSON API over a library. Like the CLI, an edge: every route
calls the same library functions (search, ask, ingest, clip); none holds pipeline logic. This module
builds the app and holds the routes of recordings, search, asks and ingest; summaries' are in
web_summary.py, and what routes share (workers, state, the token check, the router) in web_state.py.

The catalog is one SQLite connection per thread and the answerer one llama.cpp model, so library work
runs on worker threads that each own a Library handle (`Worker`): one reads (recordings, search,
transcripts, clips), one answers questions (a slow ask never holds up a search), one ingests. Who may
call the API is checked before any route (web_guard.py); background jobs and the ask queue are
bounded (web_jobs.py).
"""

from __future__ import annotations

import json
import logging
import queue
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.background import BackgroundTask

from . import web_summary
from .config import AnswerOptions, ServeOptions
from .errors import ConfigError, CustodyError, EarmarkError, LLMError, QueryError, RangeError
from .web_guard import Guard, allowed_hosts, bind_allowed
from .web_jobs import PARTIAL, AskQueue, AskTicket, Busy, IngestJob, Stopped, finish_upload, inside, leftover_uploads
from .web_state import (MAX_UPLOAD, UPLOAD_SECONDS, UPLOADS_AT_ONCE, RecordingId, ServerState, State, Worker,
                        api_router, recording_or_404)

log = logging.getLogger(__name__)

router = api_router()

STATIC = Path(__file__).parent / "static"


def serve(library_dir: Path, embed_model: str | None, options: ServeOptions) -> None:
    """Run the web app with uvicorn; refuses a non-loopback address without a token."""
    if not bind_allowed(options.host, options.token):
        raise ConfigError(f"refusing to serve on {options.host} without a token: pass --token or set "
                          "EARMARK_TOKEN (or bind 127.0.0.1)")
    import uvicorn

    app = create_app(library_dir, embed_model, options)
    app.state.earmark.reader.call(lambda lib, embedder: None)  # a library that cannot open fails here, in one line
    # limit_concurrency: past it a connection gets 503 at once instead of a thread; graceful shutdown
    # gives streaming answers 5 s to end before SIGTERM closes them.
    uvicorn.run(app, host=options.host, port=options.port, log_level="info", limit_concurrency=256,
                timeout_graceful_shutdown=5)


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


def create_app(library_dir: Path, embed_model: str | None = None,
               options: ServeOptions = ServeOptions()) -> FastAPI:
    """The earmark web app over one library; with a token, every /api request must carry it."""
    st = ServerState(Path(library_dir), options, Worker(library_dir, embed_model, "earmark-library"),
                     Worker(library_dir, embed_model, "earmark-ask"),
                     Worker(library_dir, embed_model, "earmark-ingest"),
                     Worker(library_dir, embed_model, "earmark-summary"),
                     asks=AskQueue(options.ask_queue), roots=[Path(r).resolve() for r in options.ingest_roots])

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from . import remote

        _resume_uploads(st)
        watcher = _start_watching(st)
        remote.announce(st.library_dir, options.host, options.port, bool(options.token))  # for the CLI
        _warm(st)
        yield
        remote.withdraw(st.library_dir)
        st.shutdown()
        if watcher is not None:
            watcher.join(5)

    app = FastAPI(title="earmark", description="Ask questions of your recordings; answers cite the exact second.",
                  version=_version(), lifespan=lifespan)
    app.state.earmark = st
    app.add_exception_handler(EarmarkError, _earmark_error)
    app.include_router(router)
    app.include_router(web_summary.router)
    app.mount("/", StaticFiles(directory=STATIC, html=True), name="page")
    app.add_middleware(Guard, hosts=allowed_hosts(options.host, options.allowed_hosts))
    return app


def _earmark_error(request: Request, e: EarmarkError) -> JSONResponse:
    # The request's fault: 400/422; an original that changed: 409; the model unreachable: 503; else ours.
    status = (400 if isinstance(e, RangeError) else 422 if isinstance(e, QueryError) else
              409 if isinstance(e, CustodyError) else 503 if isinstance(e, LLMError) else 500)
    return JSONResponse({"detail": str(e)}, status_code=status)


def _intact_original(lib, verified: dict, sha: str) -> Path:
    """The original's path, re-hashed only when its size or mtime moved since it was last checked."""
    from .custody import require_intact

    rec = recording_or_404(lib, sha)
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
    return {"recordings": st.reader.call(lambda lib, _: [_recording_json(r) for r in lib.recordings()])}


@router.get("/recordings/{rid}/transcript")
def transcript(st: State, rid: RecordingId) -> dict:
    """The recording's transcript: segments with times, words and speakers."""
    def run(lib, _):
        recording_or_404(lib, rid)
        return {"id": rid, **lib.transcript(rid).to_dict()}
    return st.reader.call(run)


@router.get("/recordings/{rid}/audio")
def audio(st: State, rid: RecordingId) -> FileResponse:
    """The original file, as ingested; supports HTTP Range so a player can seek."""
    path = st.reader.call(lambda lib, _: _intact_original(lib, st.verified, rid))
    return FileResponse(path, filename=path.name, content_disposition_type="inline")


@router.get("/recordings/{rid}/clip")
def clip(st: State, rid: RecordingId, start: float = Query(..., ge=0), end: float = Query(..., gt=0)) -> FileResponse:
    """A WAV clip of [start, end) seconds cut sample-exact from the original, as `earmark clip`."""
    from .clips import clip as cut

    folder = Path(tempfile.mkdtemp(prefix="earmark-clip-"))
    try:
        def run(lib, _):
            rec = recording_or_404(lib, rid)
            out = folder / f"{Path(rec.file_name).stem}-{start:.2f}-{end:.2f}.wav"
            return out, cut(lib, rec, start, end, out)
        out, manifest = st.reader.call(run)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(out, media_type="audio/wav", filename=out.name,
                        headers={"X-Earmark-Clip-Sha256": manifest["clip_sha256"]},
                        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True))


@router.get("/ping")
def ping(st: State) -> dict:
    """Which library this server serves (the CLI checks it before sending a search or an ask here)."""
    return {"library": str(st.library_dir.resolve()), "version": _version()}


@router.get("/search")
def search(st: State, q: str = Query(..., min_length=1),
           mode: str = Query("hybrid", pattern="^(hybrid|dense|lexical)$"),
           k: int = Query(10, ge=1, le=100), exact: bool = False,
           file: str | None = Query(None, description="only recordings whose name matches this glob")) -> dict:
    """Passages best matching q (as `earmark search --json`), each with its recording id."""
    from .search import SearchOptions
    from .search import exact as run_exact
    from .search import search as run_search

    if not q.strip():
        raise HTTPException(422, "the query is empty")
    options = SearchOptions(k=k, mode=mode, file=file)
    hits = st.reader.call(lambda lib, emb: run_exact(lib, q, options) if exact else run_search(lib, emb, q, options))
    return {"hits": [_hit_json(h) for h in hits]}


@router.post("/ask")
def ask(st: State, body: Question) -> StreamingResponse:
    """Stream the answer as NDJSON: `{"event":"token","text":...}` lines while the model writes, then
    one `{"event":"answer", ...}` line with the JSON of `earmark ask --json` (+ recording ids). Past
    the queue's bound, 503 with Retry-After; past the deadline, an `error` event."""
    if not body.question.strip():
        raise HTTPException(422, "the question is empty")
    try:
        st.asks.enter()
    except Busy as e:
        raise HTTPException(503, f"earmark is busy answering: {e}", headers={"Retry-After": str(e.retry_after)}) from e
    ticket = AskTicket(time.monotonic() + st.options.ask_timeout, st.stopping)
    lines: queue.Queue = queue.Queue()
    st.answerer.submit(lambda lib, emb: _answer(st, lib, emb, body, ticket, lines))
    return StreamingResponse(_lines(lines, ticket), media_type="application/x-ndjson")


@router.post("/ingest", status_code=202)
async def ingest(st: State, request: Request) -> dict:
    """Ingest an uploaded file (multipart field `file`, up to 500 MB) or `{"path": ...}` under one of
    the server's ingest roots; returns a job id to follow at GET /api/ingest/{job}."""
    job_id = uuid.uuid4().hex[:12]
    upload = None
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        upload = st.library_dir / "uploads" / job_id
        paths = [str(await _save_upload(st, request, upload))]
    else:
        try:
            paths = [str(_server_path(st, IngestPath.model_validate(await request.json()).path))]
        except ValueError as e:
            raise HTTPException(422, 'send a multipart "file" or JSON {"path": "..."}') from e
    job = st.jobs.add(IngestJob(job_id, paths, upload=upload))
    st.ingester.submit(lambda lib, emb: _run_ingest(st, lib, emb, job))
    return job.to_json()


@router.get("/ingest/{job}")
def ingest_progress(st: State, job: str) -> dict:
    """Progress of an ingest job: status, files done of total, per-file results."""
    found = st.jobs.get(job)
    if found is None:
        raise HTTPException(404, f"no ingest job {job[:40]!r}")
    return found.to_json()


def _version() -> str:
    from . import __version__

    return __version__


def _server_path(st: ServerState, given: str) -> Path:
    """A path a client asked to ingest, if it lies under an ingest root; refused alike whether or not it
    exists outside them, so the answer tells nothing about the server's files."""
    if not st.roots:
        raise HTTPException(403, "ingest by server path is off: upload the file, or start serve with "
                                 "--ingest-root DIR")
    path = Path(given)
    if not path.is_absolute() or not inside(path, st.roots):
        raise HTTPException(403, "that path is not under an ingest root of this server: give an absolute "
                                 f"path under {', '.join(map(str, st.roots))}")
    if not path.exists():
        raise HTTPException(404, f"{given}: no such file or folder under the ingest roots")
    return path


def _answer(st: ServerState, lib, emb, body: Question, ticket: AskTicket, lines: queue.Queue) -> None:
    """Run ask() for one request on the answering thread, putting NDJSON events on `lines`."""
    from .answer import ask as run_ask
    from .llm import FieldStream
    from .search import SearchOptions

    field_ = FieldStream("answer")

    def on_token(text: str) -> None:
        ticket.check()  # a client that left, a deadline passed or a shutdown stops the generation
        new = field_.feed(text)
        if new:
            lines.put({"event": "token", "text": new})

    took = None
    try:
        ticket.check()
        answer = run_ask(lib, emb, body.question, AnswerOptions(),
                         SearchOptions(mode=body.mode, file=body.file), on_token=on_token)
        lines.put({"event": "answer", **_answer_json(lib, answer)})
        took = time.monotonic() - ticket.started
    except (EarmarkError, Stopped) as e:
        lines.put({"event": "error", "detail": str(e)})
    except Exception as e:  # the stream has begun: the error must travel inside it
        log.exception("ask failed")
        lines.put({"event": "error", "detail": f"unexpected {type(e).__name__}: {e}"})
    finally:
        st.asks.leave(took)
        lines.put(None)


def _lines(lines: queue.Queue, ticket: AskTicket) -> Iterator[bytes]:
    """The NDJSON lines of an ask as they come; a client that goes away marks its ask gone."""
    try:
        while (line := lines.get()) is not None:
            yield (json.dumps(line, ensure_ascii=False) + "\n").encode()
    finally:
        ticket.gone.set()


async def _save_upload(st: ServerState, request: Request, folder: Path) -> Path:
    """Store the multipart `file` in folder, written under a partial name and renamed once whole; a
    sanitised base name only. 413 past MAX_UPLOAD, 503 past UPLOADS_AT_ONCE, 408 past UPLOAD_SECONDS."""
    import asyncio

    if int(request.headers.get("content-length") or 0) > MAX_UPLOAD + 1024 * 1024:
        raise HTTPException(413, f"upload larger than {MAX_UPLOAD // 2**20} MB")
    if not st.uploads.acquire(blocking=False):
        raise HTTPException(503, f"{UPLOADS_AT_ONCE} uploads are already being received; retry shortly",
                            headers={"Retry-After": "10"})
    partial = folder.with_name(PARTIAL + folder.name)
    try:
        form = await asyncio.wait_for(request.form(max_files=1, max_fields=8, max_part_size=MAX_UPLOAD + 1),
                                      UPLOAD_SECONDS)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(422, 'the multipart form has no "file"')
        name = re.sub(r"[^\w.\- ]", "_", Path(upload.filename or "upload").name).lstrip(".") or "upload"
        partial.mkdir(parents=True, exist_ok=True)
        size = 0
        with (partial / name).open("wb") as f:
            while chunk := await upload.read(1 << 20):
                size += len(chunk)
                if size > MAX_UPLOAD:
                    raise HTTPException(413, f"upload larger than {MAX_UPLOAD // 2**20} MB")
                f.write(chunk)
        partial.rename(folder)
        return folder / name
    except asyncio.TimeoutError:
        raise HTTPException(408, f"the upload took longer than {UPLOAD_SECONDS} s; try again") from None
    finally:
        st.uploads.release()
        shutil.rmtree(partial, ignore_errors=True)


def _run_ingest(st: ServerState, lib, embedder, job: IngestJob) -> None:
    """Ingest a job's files, recording each result on the job as it finishes; files reached through a
    link out of the ingest roots are refused, each in its own line."""
    from .ingest import discover, ingest

    def on_file(r) -> None:
        job.done += 1
        job.files.append({"file": r.path.name, "status": r.status, "message": r.message, "recording": r.sha256})

    job.status = "running"
    try:
        files = discover(job.paths)
        job.total = len(files)
        if job.upload is None:
            for outside in [f for f in files if not inside(f, st.roots)]:
                files.remove(outside)
                job.done += 1
                job.files.append({"file": outside.name, "status": "failed", "recording": "",
                                  "message": f"{outside.name}: links outside the ingest roots; not read"})
        ingest(lib, embedder, files, on_file=on_file, cancel=st.stopping)
    except Exception as e:  # a batch boundary: the job records it, the server goes on
        log.exception("ingest job %s failed", job.id)
        job.status, job.message = "failed", str(e)
        finish_upload(job)
        return
    count = {s: sum(f["status"] == s for f in job.files) for s in ("ingested", "skipped", "failed")}
    if st.stopping.is_set() and job.done < (job.total or 0):
        job.status, job.message = "interrupted", "the server stopped; the rest resumes when it starts again"
    else:
        job.status = "failed" if count["failed"] else "done"
        job.message = f"{count['ingested']} ingested, {count['skipped']} skipped, {count['failed']} failed"
    finish_upload(job)


def _warm(st: ServerState) -> None:
    """Load, in the background, what the first search and the first ask would otherwise wait for: the
    search embedder's first query, the judge and the answering model (measured in eval/cli_speed.py)."""
    from .config import AnswerOptions, EmbedOptions
    from .embed import load
    from .llm import warm

    def answerer(lib, emb) -> None:
        load(EmbedOptions(model=AnswerOptions().support_model)).embed_query("warm")
        warm(AnswerOptions())

    st.reader.submit(lambda lib, emb: emb.embed_query("warm"))
    st.answerer.submit(answerer)


def _start_watching(st: ServerState) -> threading.Thread | None:
    """`serve --watch`: the watcher runs in a thread of its own; its passes run on the ingest worker,
    one after another with upload jobs, and stop with the server."""
    if not st.options.watch:
        return None
    from .audio import one_line
    from .watch import watch

    def run() -> None:
        try:
            watch(list(st.options.watch), st.ingester.call, st.stopping, ignore=st.library_dir,
                  on_file=lambda r: log.info("watch: %s %s: %s", r.status, r.path, one_line(r.message)),
                  on_change=lambda c: log.info("watch: %s %s: %s -> %s", c.action, c.file, c.path, c.detail),
                  on_ready=lambda: log.info("watching %s", ", ".join(map(str, st.options.watch))))
        except Exception:
            if not st.stopping.is_set():  # a worker shut down under a pass is the server stopping
                log.exception("the folder watcher stopped")

    thread = threading.Thread(target=run, name="earmark-watch", daemon=True)
    thread.start()
    return thread


def _resume_uploads(st: ServerState) -> None:
    """On start: clear half-written uploads and queue the whole ones no recording comes from yet."""
    # Only an indexed recording is finished: one killed mid-index is "transcribed" and resumes too.
    known = st.reader.call(lambda lib, _: {r.path for r in lib.recordings() if r.status == "indexed"})
    for folder in leftover_uploads(st.library_dir / "uploads", known):
        job = st.jobs.add(IngestJob(folder.name, [str(folder)], upload=folder))
        log.info("resuming the ingest of upload %s", folder.name)
        st.ingester.submit(lambda lib, emb, job=job: _run_ingest(st, lib, emb, job))
