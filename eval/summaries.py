"""Summaries and chapters, measured: chapter boundaries against known file boundaries, and how many of
the sentences the model writes are borne out by the transcript they cite.

- **Chapters.** Stitched archives (stitch.py) join real clips at known offsets: every clip start after
  the first is a true boundary. A chapter boundary (its first sentence's start) is right if a true one
  lies within 10 s (TOLERANCE), and a true one is found if a chapter boundary lies that near:
  precision, recall and F1. The chapter settings (window, min_chapter) are swept on the **dev**
  archive (10 min, seed 1) only; the **test** archive (60 min, seed 0, the main eval's) is measured
  once with the defaults in pipeline/config.py.
- **Summaries.** Every real recording and the test archive are summarised with the answering model.
  Reported: the share of the sentences the model wrote that were kept (borne out by their cited
  span), the kept ones checked again from the stored transcript alone (the words spoken and Whisper's
  translation in the cited times), titles borne out, chapters, and seconds per summary.

Run: ``python -m earmark_eval.summaries --out eval/results/summaries`` (about 40 minutes on 2 cores;
``--no-archive-summary`` leaves out the 60-minute archive's summary, the longest part).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from earmark_eval.references import REAL_DIR
from earmark_eval.stitch import AUDIO_SUFFIXES, build_archive
from earmark_eval.timing import ingest_in_child

TOLERANCE = 10.0  # seconds between a chapter boundary and a file boundary that still count as one
DEV = {"minutes": 10, "seed": 1}
TEST = {"minutes": 60, "seed": 0}
WINDOWS = (2, 3, 5)
MIN_CHAPTERS = (0.0, 10.0, 20.0, 30.0, 60.0)


def boundary_scores(found: list[float], true: list[float], tolerance: float = TOLERANCE) -> dict:
    """Precision, recall and F1 of chapter boundaries ``found`` against ``true`` ones (seconds)."""
    right = sum(any(abs(f - t) <= tolerance for t in true) for f in found)
    hit = sum(any(abs(f - t) <= tolerance for f in found) for t in true)
    p = right / len(found) if found else (1.0 if not true else 0.0)
    r = hit / len(true) if true else 1.0
    return {"found": len(found), "true": len(true), "precision": p, "recall": r,
            "f1": 2 * p * r / (p + r) if p + r else 0.0}


def recheck(transcript, point: dict) -> bool:
    """Whether a kept summary sentence is borne out by the transcript alone: the words spoken and
    Whisper's translation within its cited times (not the evidence the summariser kept)."""
    from pipeline import verify
    from pipeline.records import during
    from pipeline.summary import ASKED

    said = [f"{s.speaker or ''}: {s.text}" for c in point["citations"] for pool in (transcript.segments, transcript.translations)
            for s in during(pool, c["start"], c["end"])]
    return bool(said) and verify.supports(ASKED, point["text"], " ".join(said))


def summary_row(lib, embedder, sha: str) -> dict:
    """Summarise one recording (again) and measure it."""
    from pipeline.summary import summarize

    t0 = time.monotonic()
    s = summarize(lib, embedder, sha, again=True)
    seconds = time.monotonic() - t0
    d = s.to_json()
    transcript = lib.transcript(sha)
    kept = d["summary"] + [p for c in d["chapters"] for p in c["points"]]
    return {"file": s.file, "seconds": round(seconds, 1), "duration": transcript.duration,
            "chapters": len(d["chapters"]), "written": s.written, "dropped": s.dropped,
            "kept": len(kept), "rechecked": sum(recheck(transcript, p) for p in kept),
            "titles": len(d["chapters"]), "titles_quoted": s.titles_quoted, "summary": d}


def totals(rows: list[dict]) -> dict:
    """The summary figures over some recordings."""
    written, dropped = sum(r["written"] for r in rows), sum(r["dropped"] for r in rows)
    kept, titles = sum(r["kept"] for r in rows), sum(r["titles"] for r in rows)
    return {"recordings": len(rows), "written": written, "kept_share": (written - dropped) / written if written else None,
            "kept": kept, "rechecked_share": sum(r["rechecked"] for r in rows) / kept if kept else None,
            "titles_borne_out": (titles - sum(r["titles_quoted"] for r in rows)) / titles if titles else None,
            "chapters": sum(r["chapters"] for r in rows), "seconds": round(sum(r["seconds"] for r in rows), 1),
            "audio_seconds": round(sum(r["duration"] for r in rows), 1)}


def _archive(out: Path, which: dict, embed_model: str) -> tuple[Path, dict, str]:
    """A stitched archive and a library holding it (both kept under ``out`` and reused)."""
    wav = out / f"archive-{which['minutes']}min-seed{which['seed']}.wav"
    manifest = json.loads(wav.with_suffix(".json").read_text()) if wav.exists() else \
        build_archive(wav, which["minutes"], which["seed"])
    library = out / f"library-{wav.stem}"
    run = ingest_in_child(library, [wav], embed_model, lambda line: print(line, file=sys.stderr))
    return library, manifest, run["files"][0]["sha256"]


def chapter_times(lib, embedder, sha: str, options) -> list[float]:
    """Where the chapters of a recording start, the first excepted."""
    from pipeline import chapters
    from pipeline.summary import sentences_of

    spans = sentences_of(lib.transcript(sha))
    parts = chapters.split(spans, embedder.embed([s.said for s in spans]), options)
    return [p[0].start for p in parts[1:]]


def sweep(lib, embedder, sha: str, manifest: dict) -> list[dict]:
    """Chapter boundary scores on a (dev) archive for each window and min_chapter."""
    from pipeline.config import SummaryOptions

    true = [c["offset"] for c in manifest["clips"][1:]]
    return [{"window": w, "min_chapter": m,
             **boundary_scores(chapter_times(lib, embedder, sha, replace(SummaryOptions(), window=w, min_chapter=m)), true)}
            for w, m in itertools.product(WINDOWS, MIN_CHAPTERS)]


def run(out: Path, archive_summary: bool = True) -> dict:
    from pipeline.config import EmbedOptions, SummaryOptions
    from pipeline.embed import load
    from pipeline.store import Library

    out.mkdir(parents=True, exist_ok=True)
    embedder = load(EmbedOptions())
    report: dict = {"tolerance": TOLERANCE, "options": asdict(SummaryOptions())}
    # Chapters: the sweep on dev, the defaults on test.
    lib_dir, manifest, sha = _archive(out, DEV, embedder.name)
    lib = Library(lib_dir, embedder.name)
    report["dev"] = {**DEV, "clips": len(manifest["clips"]), "sweep": sweep(lib, embedder, sha, manifest),
                     "defaults": boundary_scores(chapter_times(lib, embedder, sha, SummaryOptions()),
                                                 [c["offset"] for c in manifest["clips"][1:]])}
    lib.close()
    tlib_dir, tmanifest, tsha = _archive(out, TEST, embedder.name)
    tlib = Library(tlib_dir, embedder.name)
    report["test"] = {**TEST, "clips": len(tmanifest["clips"]),
                      "chapters": boundary_scores(chapter_times(tlib, embedder, tsha, SummaryOptions()),
                                                  [c["offset"] for c in tmanifest["clips"][1:]])}
    # Summaries: every real recording, then the test archive.
    real = sorted(p for p in REAL_DIR.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    rlib_dir = out / "library-real"
    ran = ingest_in_child(rlib_dir, real, embedder.name, lambda line: print(line, file=sys.stderr))
    rlib = Library(rlib_dir, embedder.name)
    rows = []
    for f in ran["files"]:
        rows.append(summary_row(rlib, embedder, f["sha256"]))
        print(f"  summary {rows[-1]['file']}: {rows[-1]['chapters']} chapters, {rows[-1]['seconds']} s", file=sys.stderr)
    report["real"] = {"totals": totals(rows), "rows": rows}
    rlib.close()
    _write(out, report)  # (what is measured so far: the archive's summary takes longest)
    if archive_summary:
        row = summary_row(tlib, embedder, tsha)
        report["test"]["summary"] = {"totals": totals([row]), "row": row}
        _write(out, report)
    tlib.close()
    return report


def _write(out: Path, report: dict) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    (out / "report.md").write_text(markdown(report))


def _f(x, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def markdown(report: dict) -> str:
    """The report as markdown."""
    dev, test = report["dev"], report["test"]
    lines = ["# Summaries and chapters", "",
             "`python -m earmark_eval.summaries --out eval/results/summaries` (one run, 2 cores).", "",
             f"## Chapter boundaries (within {report['tolerance']:g} s of a file boundary of a stitched archive)", "",
             "| archive | clips | chapter boundaries | precision | recall | F1 |", "|---|---|---|---|---|---|"]
    for name, a, s in (("dev", dev, dev["defaults"]), ("test", test, test["chapters"])):
        lines.append(f"| {name}: {a['minutes']} min, seed {a['seed']} | {a['clips']} | {s['found']} | "
                     f"{_f(s['precision'])} | {_f(s['recall'])} | {_f(s['f1'])} |")
    lines += ["", f"Defaults: {report['options']}.", "", "Sweep on dev only (the test archive never chose a setting):", "",
              "| window | min_chapter s | boundaries | precision | recall | F1 |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['window']} | {r['min_chapter']:g} | {r['found']} | {_f(r['precision'])} | {_f(r['recall'])} | "
              f"{_f(r['f1'])} |" for r in dev["sweep"]]
    lines += ["", "## Summary sentences borne out by their cited transcript", "",
              "| recordings | audio | chapters | sentences written | kept (borne out) | kept, rechecked from the transcript | "
              "titles borne out | seconds |", "|---|---|---|---|---|---|---|---|"]
    sets = [("the 20 real recordings", report["real"]["totals"])]
    if "summary" in test:
        sets.append((f"test archive, {test['minutes']} min", test["summary"]["totals"]))
    for name, t in sets:
        lines.append(f"| {name} | {t['audio_seconds'] / 60:.1f} min | {t['chapters']} | {t['written']} | "
                     f"{_f(t['kept_share'])} | {_f(t['rechecked_share'])} | {_f(t['titles_borne_out'])} | {t['seconds']:g} |")
    lines += ["", "A sentence not borne out is dropped before it is shown; 'kept' is the share shown. "
              "'Rechecked' reads only the stored transcript in the cited times."]
    if "summary" not in test:
        lines += ["", f"The {test['minutes']}-minute archive's summary is not in this report (not measured, or still running)."]
    lines += ["",
              "## Per recording", "", "| file | s | chapters | written | dropped | summary |", "|---|---|---|---|---|---|"]
    for r in report["real"]["rows"]:
        said = " ".join(p["text"] for p in r["summary"]["summary"]).replace("|", "/")
        lines.append(f"| {r['file']} | {r['seconds']:g} | {r['chapters']} | {r['written']} | {r['dropped']} | {said} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--no-archive-summary", action="store_true")
    args = parser.parse_args(argv)
    run(args.out, not args.no_archive_summary)


if __name__ == "__main__":
    main()
