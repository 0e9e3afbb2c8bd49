"""Long-file behaviour: timestamp drift and words indexed inside gaps, on stitched archives.

eval builds 10- and 60-minute archives from the real clips at offsets it records (stitch.py), ingests
each into a library of its own, finds known phrases in the word timestamps near their true offsets,
and reports the error as a function of position, plus the words indexed inside silence/noise gaps.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from earmark_eval import metrics
from earmark_eval.timing import Progress, ingest_in_child

DRIFT_WINDOW = 30.0  # a phrase's first words are looked for within this many seconds of their true start
DRIFT_WORDS = 3  # how many of the phrase's first words must match in a row (falls back to one)
EDGE_SECONDS = 600.0  # "first / last ten minutes" of an archive
ARCHIVE_SEED = 0


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _tokens(words: Sequence[dict]) -> list[tuple[str, float]]:
    """Folded word tokens with their word's start ("don't" gives two tokens at one time)."""
    return [(tok, w["start"]) for w in words for tok in metrics.fold(w["text"]).split()]


def find_phrase(tokens: Sequence[tuple[str, float]], phrase: str, expected: float,
                window: float = DRIFT_WINDOW, n: int = DRIFT_WORDS) -> tuple[float, int] | None:
    """Start of the phrase's first ``n`` words (else its first word) in ``tokens``, nearest to
    ``expected`` within ``window`` seconds; returns (start, words matched) or None."""
    target = metrics.fold(phrase).split()
    for size in dict.fromkeys((min(n, len(target)), 1)):
        want = target[:size]
        starts = [tokens[i][1] for i in range(len(tokens) - size + 1)
                  if abs(tokens[i][1] - expected) <= window and [t for t, _ in tokens[i:i + size]] == want]
        if starts:
            return min(starts, key=lambda s: abs(s - expected)), size
    return None


def drift(words: Sequence[dict], manifest: dict) -> dict:
    """|found start - true start| of every known phrase of an archive, and means by position."""
    tokens = _tokens(words)
    rows = []
    for p in manifest["known_phrases"]:
        found = find_phrase(tokens, p["phrase"], p["start"])
        rows.append({"phrase": p["phrase"], "file": p["file"], "true_start": p["start"],
                     "found_start": found[0] if found else None, "matched_words": found[1] if found else 0,
                     "error": abs(found[0] - p["start"]) if found else None})
    duration = manifest["duration"]
    errs = [r["error"] for r in rows if r["error"] is not None]
    first = [r["error"] for r in rows if r["error"] is not None and r["true_start"] < EDGE_SECONDS]
    last = [r["error"] for r in rows if r["error"] is not None and r["true_start"] >= duration - EDGE_SECONDS]
    return {"n": len(rows), "found": len(errs), "mean": _mean(errs),
            "p95": metrics.percentile(errs, 95), "max": max(errs) if errs else None,
            "mean_first_10min": _mean(first), "mean_last_10min": _mean(last), "rows": rows}


def gap_words(words: Sequence[dict], gaps: Sequence[dict]) -> dict:
    """Words whose midpoint falls in a gap, per minute of gap, overall and by gap kind."""
    out = {}
    for kind in ("all", *sorted({g["kind"] for g in gaps})):
        subset = [g for g in gaps if kind == "all" or g["kind"] == kind]
        minutes = sum(g["end"] - g["start"] for g in subset) / 60
        n = metrics.words_in_gaps(words, subset)
        out[kind] = {"gaps": len(subset), "gap_minutes": round(minutes, 3), "words": n,
                     "per_minute": n / minutes if minutes else None}
    return out


def _words(transcript, indexed_only: bool) -> list[dict]:
    return [{"start": w.start, "end": w.end, "text": w.text} for s in transcript.segments
            if s.flag is None or not indexed_only for w in s.words]


def measure_archive(minutes: float, audio_dir: Path, out: Path, embedder, progress: Progress) -> dict:
    """Build a stitched archive of ``minutes``, ingest it into a library of its own, measure drift."""
    from pipeline.store import Library
    from earmark_eval.stitch import build_archive

    folder = out / "archives"
    folder.mkdir(parents=True, exist_ok=True)
    wav = folder / f"archive-{minutes:g}min.wav"
    try:
        manifest = build_archive(wav, minutes, ARCHIVE_SEED, clips_dir=audio_dir)
    except ValueError as e:  # e.g. no English clip known to open it with: this folder cannot make one
        return {"minutes": minutes, "skipped": str(e)}
    progress(f"archive {minutes:g} min: ingest {wav.name}")
    library = folder / f"library-{minutes:g}min"
    # In a process of its own, so that its peak memory is this archive's alone; the wav alone, never
    # its .json manifest.
    run = ingest_in_child(library, [wav], embedder.name, progress)
    result = run["files"][0]
    if result["status"] == "failed":
        return {"minutes": minutes, "skipped": f"ingest failed: {result['message']}"}
    lib = Library(library, embedder.name)
    transcript = lib.transcript(result["sha256"])
    indexed = _words(transcript, indexed_only=True)
    lib.close()
    return {"minutes": minutes, "wav": str(wav), "duration": manifest["duration"], "seed": ARCHIVE_SEED,
            "clips": len(manifest["clips"]), "reused": result["status"] == "skipped",
            "speed": {k: v for k, v in run.items() if k not in ("files", "peak_rss_mb", "rss_mb")},
            "peak_rss_mb": run["peak_rss_mb"],
            "drift": drift(indexed, manifest), "gaps": gap_words(indexed, manifest["gaps"]),
            "gaps_all_words": gap_words(_words(transcript, indexed_only=False), manifest["gaps"])}
