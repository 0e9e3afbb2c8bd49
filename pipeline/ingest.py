"""Ingest: files and folders in, searchable recordings out (audio → transcribe → chunk → embed → store).

Each file goes through the stages in order and its state is committed after each one, so an
interrupted run resumes where it stopped: a file already indexed (same bytes, any name) is skipped,
one already transcribed is only indexed. A file that fails is reported and the rest continue.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from . import allocator
from . import audio as audio_mod
from . import speakers, trace, vad
from .chunk import passages as make_passages
from .config import ChunkOptions, EmbedOptions, TranscribeOptions, env_number, env_switch
from .diarize import DiarizationError, DiarizeOptions, Diarizer
from .embed import Embedder
from .embed import load as load_embedder
from .errors import AudioError, EarmarkError
from .audit import log_event, logged_ingest
from .records import Transcript, now
from .store import Library
from .transcribe import number, transcribe_piece

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestOptions:
    transcribe: TranscribeOptions = TranscribeOptions()
    chunk: ChunkOptions = ChunkOptions()
    embed: EmbedOptions = EmbedOptions()
    # Speaker turns (RTTM/STM) for a single recording; otherwise a <stem>.stm/.rttm beside each file is used.
    speakers: Path | None = None
    # Without a turns file, find who spoke when by voice (diarize.py); EARMARK_DIARIZE=0 turns it off.
    diarize: bool = env_switch("EARMARK_DIARIZE", True)
    diarization: DiarizeOptions = DiarizeOptions()  # speaker-count bounds (--num/--min/--max-speakers)
    # Files transcribed at once, each in its own process with threads/jobs threads (--jobs); the
    # parent embeds and stores meanwhile. None: one per core when several files need transcribing
    # (see _Transcriber; eval's folder-ingest line measures it).
    jobs: int | None = env_number("EARMARK_INGEST_JOBS", None)
    # Transcribe on the Ray cluster at this address ("auto": the one this machine is in; cluster.py);
    # this process stays the only writer. None: here.
    ray: str | None = os.environ.get("EARMARK_RAY") or None


@dataclass
class FileResult:
    path: Path
    status: str  # "ingested" | "skipped" | "failed"
    message: str = ""
    sha256: str = ""
    duration: float = 0.0


@dataclass
class IngestReport:
    results: list[FileResult] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # wall seconds per stage

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    def add_time(self, stage: str, seconds: float) -> None:
        self.timings[stage] = self.timings.get(stage, 0.0) + seconds


def discover(paths: Iterable[str | Path]) -> list[Path]:
    """Files named directly, plus audio/video files found recursively in folders, in a stable order.

    A symbolic link in a folder that leads nowhere (dangling, or a loop) is kept, so that ingest
    reports it as failed instead of passing over it in silence; links to folders are not followed
    (pathlib's rglob does not), so a loop of folders cannot hang the walk."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.suffix.lower() in audio_mod.AUDIO_EXTENSIONS
                            and (f.is_file() or (f.is_symlink() and not f.exists())))
        else:
            found.append(p)
    return list(dict.fromkeys(found))


class Cancelled(EarmarkError):
    """Ingest was asked to stop (the server is shutting down); what was stored stays, the rest resumes."""


def ingest(library: Library, embedder: Embedder, paths: Iterable[str | Path],
           options: IngestOptions = IngestOptions(),
           on_file: Callable[[FileResult], None] | None = None,
           cancel: threading.Event | None = None) -> IngestReport:
    """Ingest every file under `paths`; failures are recorded per file, never raised.

    Setting `cancel` stops the run between files (and a file transcribed here between pieces): the
    files not finished are left out of the report and a later run resumes them.

    The whole run holds the library's writer lock (lock.py), so a second ingest (or the server's)
    waits for this one: the transcriber plans its work from what the library holds at the start, and
    two runs of overlapping folders would otherwise transcribe the same files twice on the same cores."""
    files = discover(paths)
    if options.speakers and len(files) > 1:
        raise EarmarkError("--speakers gives the turns of one recording; for several, put NAME.rttm "
                           "(or NAME.stm) beside each NAME.wav instead")
    with library.writing(cancel=cancel):
        return _ingest_all(library, embedder, files, options, on_file, cancel)


def _ingest_all(library: Library, embedder: Embedder, files: list[Path], options: IngestOptions,
                on_file: Callable[[FileResult], None] | None, cancel: threading.Event | None) -> IngestReport:
    """ingest() with the writer lock held."""
    report = IngestReport()
    transcriber = _Transcriber(options, cancel)
    try:
        transcriber.start(library, files)
        for path in files:
            if transcriber.cancelled:
                break
            result = _ingest_one(library, embedder, path, options, report, transcriber)
            if transcriber.cancelled:
                break  # a file cut short by the stop is not a failure: it resumes next time
            report.results.append(result)
            if on_file:
                on_file(result)
    finally:
        transcriber.close()
    return report


def _ingest_one(library: Library, embedder: Embedder, path: Path, options: IngestOptions,
                report: IngestReport, transcriber: _Transcriber) -> FileResult:
    """ingest_file, with any failure turned into a failed FileResult: one bad file never stops a folder."""
    try:
        return ingest_file(library, embedder, path, options, report, transcriber)
    except EarmarkError as e:
        return FileResult(path, "failed", str(e))
    except Exception as e:  # a batch boundary: one bad file must not stop a folder
        # The traceback is for a developer (-vv); the user gets the one line, and a full disk named as such
        # (Chroma and SQLite say it in their own words, if at all).
        log.debug("unexpected failure on %s", path, exc_info=True)
        if _disk_full(library.root, e):
            return FileResult(path, "failed", f"{audio_mod.shown(path)}: the disk holding the library {library.root} "
                              "is full; nothing was stored for this file: free some space and run ingest again")
        return FileResult(path, "failed", f"{audio_mod.shown(path)}: unexpected {type(e).__name__}: "
                          f"{audio_mod.one_line(str(e))[:200]} (run with -vv for details)")


# What a full disk says when the error carries no errno: SQLite, and Chroma's Rust core (whose errors
# arrive as text). The cause chain is searched too: a library may wrap the OSError it met. Chroma's
# compaction, though, fails on a full disk with "Error in compaction: Failed to apply logs to the
# metadata segment" and no cause at all (seen by the bad-input suite's 20 MB tmpfs): so an unexplained
# failure with almost no space left on the library's disk is named as a full disk too.
DISK_FULL_TEXTS = ("no space left on device", "disk is full", "disk full")  # SQLite: "database or disk is full"
DISK_FULL_BYTES = 64 * 2**20  # less free space than this after an unexplained failure: the disk is why


def _disk_full(root: Path, e: BaseException | None) -> bool:
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if getattr(e, "errno", None) == errno.ENOSPC or any(t in str(e).lower() for t in DISK_FULL_TEXTS):
            return True
        e = e.__cause__ or e.__context__
    try:
        return shutil.disk_usage(root).free < DISK_FULL_BYTES
    except OSError:
        return False


def ingest_file(library: Library, embedder: Embedder, path: Path, options: IngestOptions,
                report: IngestReport, transcriber: _Transcriber | None = None) -> FileResult:
    """Bring one file up to 'indexed', doing only the stages it still needs."""
    if not path.is_file():
        raise AudioError(audio_mod.missing(path))
    try:
        str(path.resolve()).encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8: the catalog (SQLite, JSON) holds text only
        raise AudioError(f"{audio_mod.shown(path)}: its name is not valid UTF-8, which the catalog cannot "
                         "store: rename it (e.g. `convmv -f latin1 -t utf8 --notest`) and ingest it again") from None
    t = time.perf_counter()
    sha = audio_mod.sha256_file(path)
    report.add_time("hash", time.perf_counter() - t)
    turns_file = options.speakers or speakers.sidecar(path)
    turns = speakers.read_turns(turns_file) if turns_file else None
    rec = library.recording(sha)
    vectors = None  # the passages' vectors, if a Ray task embedded them; else they are embedded here
    if library.transcript_path(sha).exists():
        transcript = library.transcript(sha)
        if rec is None:  # killed between saving the transcript and cataloguing it: it is whole, keep it
            _catalog(library, path, sha, transcript, recorded(path, audio_mod.probe(path).tags))
            rec = library.recording(sha)
        relabel = bool(turns) and _labels(transcript) != _labels(_with_speakers(transcript, turns))
        if rec.status == "indexed" and not relabel:
            same = "" if rec.file_name == path.name else f" as {rec.file_name} (same content)"
            return FileResult(path, "skipped", f"already in the library{same}", sha, rec.duration or 0.0)
        resumed = rec.status != "indexed"
        if relabel:
            # Not indexed until re-indexed: a kill after the new labels are saved must not leave
            # "indexed" over passages with the old ones (the labels would then match, and it be skipped).
            library.set_status(sha, "transcribed")
            transcript = _with_speakers(transcript, turns)
            library.save_transcript(transcript)
    else:
        transcriber = transcriber or _Transcriber(options)
        transcript, dated, vectors = transcriber.transcript(path, sha, turns, report)
        with trace.stage("catalog", path.name):
            library.save_transcript(transcript)
            trace.point("catalog", path.name)
            _catalog(library, path, sha, transcript, dated)
        resumed = False

    def audit() -> None:
        # Logged before the recording is marked indexed, so a kill can never leave an indexed
        # recording without its entry; a resumed ingest whose entry was written does not write another.
        if resumed and logged_ingest(library.root, sha):
            return
        with trace.stage("audit", path.name):
            log_event(library.root, "ingest", file=path.name, sha256=sha, path=str(path.resolve()),
                              size=path.stat().st_size, speakers=turns_file.name if turns_file else None)

    n = index_transcript(library, embedder, transcript, options.chunk, report, before_indexed=audit, vectors=vectors)
    who = f", speakers from {turns_file.name}" if turns_file else ""
    if not turns_file and transcript.model.get("diarization"):
        d = transcript.model["diarization"]
        who = f", no speakers: {d['error']}" if "error" in d else f", speakers found: {d['speakers']}"
    warned = "".join(f"; warning: {w}" for w in transcript.model.get("warnings", []))  # e.g. a file cut short
    return FileResult(path, "ingested", f"{n} passage{'' if n == 1 else 's'}{who}{warned}", sha, transcript.duration)


def _catalog(library: Library, path: Path, sha: str, transcript: Transcript, dated: dict[str, str]) -> None:
    """The catalog row of a newly transcribed recording (status "transcribed": not yet searchable)."""
    library.upsert_recording(sha, file_name=path.name, path=str(path.resolve()), size=path.stat().st_size,
                             duration=transcript.duration, status="transcribed",
                             languages=transcript.languages, transcribe_model=transcript.model, **dated)


def _with_speakers(transcript: Transcript, turns: list) -> Transcript:
    segs = speakers.label(list(transcript.segments), turns)
    return replace(transcript, segments=tuple(segs), created=now())


def _labels(transcript: Transcript) -> list:
    return [(s.start, s.end, s.speaker) for s in transcript.segments]


class _Transcriber:
    """Transcribes files here, or ahead of need in worker processes when several files need it.

    On two cores two processes of one thread each ingested the real recordings at 12.2x realtime
    against 9.3x for one process of two threads (the threads of one decoder wait on each other, and
    the parent embeds and stores meanwhile), so a folder gets one worker per core by default; a single
    file keeps every thread in one process. Workers are spawned, not forked, because the parent may
    already hold torch and CTranslate2 thread pools.
    """

    def __init__(self, options: IngestOptions, cancel: threading.Event | None = None):
        self.options = options
        self.cancel = cancel
        self.pool = None
        self.pending: dict[Path, object] = {}

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def start(self, library: Library, files: list[Path]) -> None:
        """Start transcribing, in workers, the files that need it, if there is more than one."""
        todo = [(path, *job) for path in files if (job := self._job(library, path))]
        if self.options.ray:
            if todo:
                self._start_on_ray(todo, EmbedOptions(model=library.embed_model))
            return
        jobs = self.options.jobs or min(len(todo), os.cpu_count() or 1, self.options.transcribe.threads)
        if jobs < 2 or len(todo) < 2:
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        threads = max(1, self.options.transcribe.threads // jobs)
        options = replace(self.options, transcribe=replace(self.options.transcribe, threads=threads))
        self.pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_worker_start, initargs=(threads,))
        for path, sha, turns in todo:
            self.pending[path] = self.pool.submit(transcribe_file, path, sha, options, turns)

    def _start_on_ray(self, todo: list, embed: EmbedOptions) -> None:
        """Every file that needs it transcribed, and its passages embedded with the library's embedder,
        by a Ray task, one thread each (cluster.py)."""
        from .cluster import RayPool

        self.pool = RayPool(self.options.ray)
        options = replace(self.options, transcribe=replace(self.options.transcribe, threads=1))
        log.info("transcribing %d file(s) on the Ray cluster at %s (%d node(s))", len(todo), self.options.ray,
                 self.pool.nodes())
        for path, sha, turns in todo:
            self.pending[path] = self.pool.submit(transcribe_on_worker, path, sha, options, turns, embed)

    def _job(self, library: Library, path: Path) -> tuple[str, list | None] | None:
        """(hash, speaker turns) of a file that needs transcribing, else None (ingest_file says why)."""
        try:
            sha = audio_mod.sha256_file(path)
            turns_file = self.options.speakers or speakers.sidecar(path)
            turns = speakers.read_turns(turns_file) if turns_file else None
        except (OSError, EarmarkError):
            return None
        return None if library.transcript_path(sha).exists() else (sha, turns)  # as ingest_file decides

    def close(self) -> None:
        if self.pool is None:
            return
        if self.cancelled:  # stop now: a worker mid-file would otherwise finish it first
            processes = list(getattr(self.pool, "_processes", {}).values())  # no public way before 3.14
            self.pool.shutdown(wait=False, cancel_futures=True)
            for p in processes:
                p.terminate()
        self.pool.shutdown(cancel_futures=True)

    def transcript(self, path: Path, sha: str, turns: list | None,
                   report: IngestReport) -> tuple[Transcript, dict[str, str], np.ndarray | None]:
        """The file's transcript, when it was recorded (`recorded`) and, from a Ray task, its passages'
        vectors (`make_passages`' order; None: embedded by the caller); transcribed here or by a worker."""
        future = self.pending.pop(path, None)
        vectors = None
        if future is None:
            transcript, timings, dated = transcribe_file(path, sha, self.options, turns, self.cancel)
        else:
            transcript, timings, dated, *rest = future.result()
            if rest:
                vectors = rest[0]
                log.info("%s: transcribed and embedded on the cluster", path.name)
            if transcript.file_hash != sha:  # changed between the worker's reading and this one
                raise AudioError(f"{audio_mod.shown(path)}: changed while it was read (still being written, or "
                                 "replaced); nothing was stored: ingest it again once it is complete")
        for stage, seconds in timings.items():
            report.add_time(stage, seconds)
        return transcript, dated, vectors


def _worker_start(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def transcribe_on_worker(path: Path, sha: str, options: IngestOptions, turns: list | None = None,
                         embed: EmbedOptions | None = None):
    """transcribe_file in a worker that another program started (a Ray task: cluster.py), and with
    `embed`, the vectors of the transcript's passages (`make_passages`) as the fourth item.

    On a cluster the driver is the library's one writer; embedding there too made it the limit of the
    cluster's throughput at about four one-CPU nodes (eval/results/ray). Here each node embeds what it
    transcribed, with the embedder loaded once per worker process (embed.load), and the driver stores."""
    _worker_start(options.transcribe.threads)
    transcript, timings, dated = transcribe_file(path, sha, options, turns)
    if embed is None:
        return transcript, timings, dated
    t = time.perf_counter()
    vectors = load_embedder(embed).embed([p.text for p in make_passages(transcript, options.chunk)])
    return transcript, {**timings, "embed on node": time.perf_counter() - t}, dated, vectors


def transcribe_file(path: Path, sha: str, options: IngestOptions, turns: list | None = None,
                    cancel: threading.Event | None = None) -> tuple[Transcript, dict[str, float], dict[str, str]]:
    """Transcribe (and diarize) a file piece by piece as ffmpeg decodes it, so memory stays flat;
    returns the transcript, the seconds spent per stage and when it was recorded (`recorded`, from the
    same ffprobe reading)."""
    report = IngestReport()
    held = audio_mod.check_unchanged(path, sha)  # the bytes about to be decoded are the ones hashed
    info = audio_mod.probe(path)
    diarizer, failure = None, None
    if not turns and options.diarize:
        try:
            total = int(info.seconds * audio_mod.SAMPLE_RATE) if info.seconds else None
            diarizer = Diarizer(options.diarization, total_samples=total, channels=info.channels)
        except DiarizationError as e:
            failure = {"error": str(e)}
    segments: list = []
    translations: list = []
    samples = 0
    for piece, regions in _timed(vad.pieces(audio_mod.stream(path, channels=info.channels)), report, "decode+vad",
                                    path.name):
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"{path.name}: ingest stopped; it resumes on the next run")
        t = time.perf_counter()
        with trace.stage("transcribe", path.name):
            spoken, english = transcribe_piece(piece, regions, options.transcribe)
        segments += spoken
        translations += english
        report.add_time("transcribe", time.perf_counter() - t)
        if diarizer is not None:
            t = time.perf_counter()
            try:
                with trace.stage("diarize", path.name):
                    diarizer.feed(piece.start, piece.samples, piece.channels)
            except DiarizationError as e:  # the transcript is kept, unlabelled, and says why
                diarizer, failure = None, {"error": str(e)}
            report.add_time("diarize", time.perf_counter() - t)
        samples = piece.end
        allocator.release()  # what this piece freed goes back to the system, not on to the next piece
    audio_mod.check_unchanged(path, sha, held)  # and still are: the transcript is of the bytes `sha` names
    model = model_record(options.transcribe)
    if warning := audio_mod.truncation(info, samples / audio_mod.SAMPLE_RATE):
        model["warnings"] = [warning]  # kept with the transcript; the ingest line shows it
    if failure:
        model["diarization"] = failure
    if diarizer is not None:
        t = time.perf_counter()
        with trace.stage("diarize", path.name):
            turns, model["diarization"] = _finish_diarizing(diarizer, path)
        report.add_time("diarize", time.perf_counter() - t)
        allocator.release()
    segments = number(speakers.label(segments, turns) if turns else segments)
    transcript = Transcript(file_hash=sha, file_name=path.name, duration=round(samples / audio_mod.SAMPLE_RATE, 3),
                            segments=tuple(segments), model=model, created=now(),
                            translations=tuple(number(translations)))
    return transcript, report.timings, recorded(path, info.tags)


def _timed(items: Iterable, report: IngestReport, stage: str, name: str = "") -> Iterator:
    """The items of an iterator, with the time spent producing them added to `stage` (and traced)."""
    it = iter(items)
    while True:
        t = time.perf_counter()
        try:
            with trace.stage(stage, name):
                item = next(it)
        except StopIteration:
            return
        finally:
            report.add_time(stage, time.perf_counter() - t)
        yield item


def _finish_diarizing(diarizer: Diarizer, path: Path) -> tuple[list | None, dict]:
    """Turns found by voice, or None, and what happened (kept in the transcript's model record).

    Every segment gets a label, one voice included (so it can be renamed and filtered on); passages
    only show labels when a recording has two voices or more (chunk.passage_text). A diarization
    failure leaves the transcript unlabelled and says why in the ingest line, rather than throwing
    the transcription away."""
    try:
        turns = diarizer.finish()
    except DiarizationError as e:
        log.warning("%s: no speakers: %s", path.name, e)
        return None, {"error": str(e)}
    n = len({x.speaker for x in turns})
    method = "pipeline/diarize.py: by channel for a two-channel call, else resemblyzer GE2E + agglomerative"
    return turns, {"method": method, "speakers": n, "labelled": True}


def recorded(path: Path, tags: dict[str, str]) -> dict[str, str]:
    """When a recording was made, as far as the file tells (ISO 8601), and how that is known: the date
    its metadata ``tags`` give (`audio.recording_date`), else its modification time (UTC), which a copy
    may have changed. As the catalog's ``recorded_at`` and ``recorded_from``."""
    from datetime import datetime, timezone

    found = audio_mod.recording_date(tags)
    if found:
        return {"recorded_at": found[0], "recorded_from": f"metadata: {found[1]}"}
    mtime = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).replace(microsecond=0).isoformat()
    return {"recorded_at": mtime, "recorded_from": "file modification time"}


def index_transcript(library: Library, embedder: Embedder, transcript: Transcript,
                     options: ChunkOptions, report: IngestReport | None = None,
                     before_indexed: Callable[[], None] | None = None, vectors: np.ndarray | None = None) -> int:
    """(Re)build a recording's passages in the index from its transcript; returns their count.

    `vectors`, one per passage `make_passages` cuts, were embedded elsewhere (a Ray task) with this
    library's embedder; without them (or if they do not fit) the passages are embedded here.
    The catalog says "indexed" last, after both indexes (and `before_indexed`, ingest's audit entry):
    a run killed before that redoes the whole step, which replaces rather than adds."""
    name = transcript.file_name
    t = time.perf_counter()
    with trace.stage("embed", name):
        passages = make_passages(transcript, options)
        if vectors is None or len(vectors) != len(passages):
            vectors = embedder.embed([p.text for p in passages])
    t_embed = time.perf_counter()
    library.replace_passages(transcript.file_hash, passages, vectors, name, transcript.segments)
    if before_indexed is not None:
        before_indexed()
    rec = library.recording(transcript.file_hash)
    with trace.stage("catalog", name):
        library.upsert_recording(
            transcript.file_hash, file_name=rec.file_name if rec else transcript.file_name,
            path=rec.path if rec else "", size=rec.size if rec else 0, duration=transcript.duration,
            status="indexed", languages=transcript.languages, transcribe_model=transcript.model,
            passages=len(passages))
    if report is not None:
        report.add_time("chunk+embed", t_embed - t)
        report.add_time("store", time.perf_counter() - t_embed)
    return len(passages)


def model_record(options: TranscribeOptions) -> dict:
    """Which model, version and settings produce a transcript (kept with it for provenance)."""
    import importlib.metadata as md

    settings = {k: v for k, v in asdict(options).items() if k not in ("threads",)}
    from .transcribe import BACKENDS

    try:
        version = md.version(BACKENDS[options.backend].package)
    except (md.PackageNotFoundError, KeyError):
        version = "unknown"
    return {"name": options.model, "backend": options.backend, "backend_version": version,
            "settings": settings}


def rename_speaker(library, embedder, sha256: str, old: str, new: str) -> int:
    """Rename a speaker in a recording's transcript (saved as a new version, the old one kept),
    re-index the recording so the name reaches search, answers and exports, and audit-log it.
    Returns the number of segments relabelled."""
    t = library.transcript(sha256)
    changes = {"segments": speakers.rename_segments(t.segments, old, new), "created": now()}
    if getattr(t, "translations", ()):
        changes["translations"] = tuple(replace(s, speaker=new) if s.speaker == old else s for s in t.translations)
    count = speakers.speaker_times(list(t.segments))[old][0]
    library.save_transcript(replace(t, **changes))
    index_transcript(library, embedder, library.transcript(sha256), ChunkOptions())
    log_event(library.root, "rename_speaker", file=t.file_name, sha256=sha256, old=old, new=new, segments=count)
    return count
