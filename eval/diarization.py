"""Diarization error rate (DER) of earmark's speaker diarization against reference turns.

Scoring is pyannote.metrics' ``DiarizationErrorRate`` (the eval extra): the optimal one-to-one mapping
of hypothesis to reference speakers, then DER = (missed speech + false alarm + speaker confusion) /
reference speech, over the whole file (UEM = [0, duration]); overlapped speech is scored. It is
reported without a collar and with the NIST collar of ±0.25 s around every reference boundary (which
pyannote calls ``collar=0.5``, the collar's full width).

References: a recording's own ``<stem>.rttm`` sidecar, else ``eval/references/<stem>.rttm`` (see
``eval/references/README.md``). Like ``run.py``, this module drives the pipeline (``pipeline.diarize``,
imported lazily), always ignoring the sidecars that ingest would otherwise use as the turns.

Quick table without the full eval::

    .venv/bin/python -m earmark_eval.diarization --audio ../shared/data/real
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from earmark_eval.references import REAL_DIR, REFERENCES_DIR, load_recordings

log = logging.getLogger(__name__)

COLLAR = 0.25  # seconds forgiven on each side of a reference boundary (NIST md-eval's standard)

Turns = Sequence[tuple[float, float, str]]  # (start, end, speaker)

DEFS = f"""\
earmark diarizes each file that has reference turns (its own `.rttm` sidecar, else
`eval/references/<stem>.rttm`), ignoring the sidecar that ingest would use. **DER** = (missed speech + false
alarm + speaker confusion) / reference speech, after the best one-to-one mapping of speakers
(pyannote.metrics), over the whole file; overlapped speech counts (a one-speaker-at-a-time output misses
it). "collar" forgives ±{COLLAR} s around every reference boundary (NIST convention). Pooled rows sum the
error and reference seconds over files."""


def read_rttm(path: str | Path) -> list[tuple[float, float, str]]:
    """(start, end, speaker) of every SPEAKER line of an RTTM file."""
    turns = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        f = line.split()
        if f and f[0] == "SPEAKER":
            start = float(f[3])
            turns.append((start, start + float(f[4]), f[7]))
    return turns


def reference_path(audio_path: str | Path) -> Path | None:
    """The reference turns of a recording: its ``.rttm`` sidecar, else eval's own, else None."""
    audio_path = Path(audio_path)
    for candidate in (audio_path.with_suffix(".rttm"), REFERENCES_DIR / f"{audio_path.stem}.rttm"):
        if candidate.is_file():
            return candidate
    return None


def _annotation(turns: Turns, uri: str):
    from pyannote.core import Annotation, Segment

    ann = Annotation(uri=uri)
    for k, (start, end, who) in enumerate(turns):
        if end > start:
            ann[Segment(start, end), k] = who
    return ann


def der(reference: Turns, hypothesis: Turns, duration: float, collar: float = 0.0) -> dict:
    """DER of ``hypothesis`` against ``reference`` over [0, duration] with ±``collar`` s forgiven
    around reference boundaries; returns the rate and its parts in seconds."""
    try:
        from pyannote.core import Segment, Timeline
        from pyannote.metrics.diarization import DiarizationErrorRate
    except ImportError as e:
        raise RuntimeError("DER needs pyannote.metrics: pip install 'earmark[eval]'") from e
    metric = DiarizationErrorRate(collar=2 * collar, skip_overlap=False)  # pyannote: full collar width
    parts = metric(_annotation(reference, "f"), _annotation(hypothesis, "f"),
                   uem=Timeline([Segment(0, duration)]), detailed=True)
    total = parts["total"]
    return {"der": parts["diarization error rate"] if total else None, "total": total,
            "missed": parts["missed detection"], "false_alarm": parts["false alarm"],
            "confusion": parts["confusion"]}


def score(reference: Turns, hypothesis: Turns, duration: float) -> dict:
    """One file's row: DER without and with the collar, its parts, and the speaker counts."""
    plain, forgiven = der(reference, hypothesis, duration), der(reference, hypothesis, duration, COLLAR)
    return {"der": plain["der"], "der_collar": forgiven["der"], "parts": plain, "parts_collar": forgiven,
            "ref_speakers": len({t[2] for t in reference}), "hyp_speakers": len({t[2] for t in hypothesis})}


def pooled(rows: Sequence[dict]) -> dict:
    """DER over all scored files: summed error seconds / summed reference seconds."""
    out = {}
    for key, parts in (("der", "parts"), ("der_collar", "parts_collar")):
        done = [r[parts] for r in rows if r.get(parts)]
        total = sum(p["total"] for p in done)
        errors = sum(p["missed"] + p["false_alarm"] + p["confusion"] for p in done)
        out[key] = errors / total if total else None
    return out


def run_diarization(files: Sequence[Path], progress: Callable[[str], None] = log.info) -> dict:
    """Diarize every file that has reference turns and score it; failures are rows with an error."""
    from pipeline.audio import load
    from pipeline.diarize import DiarizeOptions, diarize

    rows, counts = [], []
    known = load_recordings()
    for path in files:
        ref_path = reference_path(path)
        if ref_path is None:
            true = known.get(path.name, {}).get("speakers")
            if true is not None:  # no turns to score, but how many voices it has is known
                counts.append(_count_row(path, int(true)))
            continue
        row = {"file": path.name, "reference": str(ref_path)}
        try:
            audio = load(path)
            start = time.perf_counter()
            turns = diarize(audio, DiarizeOptions())
            row["seconds"] = round(time.perf_counter() - start, 3)
            hyp = [(t.start, t.end, t.speaker) for t in turns]
            row.update(duration=round(audio.duration, 3), **score(read_rttm(ref_path), hyp, audio.duration))
        except Exception as e:  # one file must not stop the table; the row says what went wrong
            row["error"] = f"{type(e).__name__}: {e}"
        rows.append(row)
        progress(f"diarization {path.name}: DER {row.get('der')} (collar: {row.get('der_collar')})")
    return {"collar": COLLAR, "files": rows, "pooled": pooled(rows), "counts": counts}


def _count_row(path: Path, true: int) -> dict:
    """How many speakers earmark finds in a recording without reference turns, against how many it has."""
    from pipeline.audio import load
    from pipeline.diarize import DiarizeOptions, count, diarize

    row = {"file": path.name, "true": true}
    try:
        row["found"] = count(diarize(load(path), DiarizeOptions()))
    except Exception as e:  # one file must not stop the table
        row["error"] = f"{type(e).__name__}: {e}"
    return row


def count_summary(result: dict | None) -> tuple[int, int] | None:
    """(recordings given their true number of speakers, recordings with a known number), over every
    diarized file: those scored against reference turns and those only counted."""
    if not result:
        return None
    pairs = [(r.get("hyp_speakers"), r.get("ref_speakers")) for r in result["files"] if "error" not in r]
    pairs += [(r.get("found"), r["true"]) for r in result.get("counts", []) if "error" not in r]
    return (sum(found == true for found, true in pairs), len(pairs)) if pairs else None


def markdown(result: dict | None) -> str:
    """The report section: definitions and one row per file (with the pooled rows)."""
    from earmark_eval.report import table

    if not result or not result["files"]:
        return ""
    rows = []
    for r in result["files"]:
        if "error" in r:
            rows.append([r["file"], "failed: " + r["error"][:80], None, None, None, None, None, None, None])
            continue
        p = r["parts"]
        rows.append([r["file"], f"{r['hyp_speakers']} / {r['ref_speakers']}", r["der"], r["der_collar"],
                     p["missed"] / p["total"], p["false_alarm"] / p["total"], p["confusion"] / p["total"],
                     p["total"], r["seconds"]])
    pool = result["pooled"]
    rows.append(["**pooled**", "", pool["der"], pool["der_collar"], None, None, None, None, None])
    head = ["file", "speakers found / true", "DER", f"DER (±{result['collar']} s collar)", "missed",
            "false alarm", "confusion", "ref speech (s)", "diarize (s)"]
    section = f"## Speaker diarization\n\n{DEFS}\n\n{table(head, rows)}"
    counts = result.get("counts") or []
    if counts:
        right, n = count_summary(result)
        section += ("\n\nThe recordings without reference turns, diarized the same way: how many speakers earmark "
                    f"finds against how many MANIFEST.md says they have. Over all files, {right} of {n} get "
                    "the right number.\n\n" +
                    table(["file", "speakers found / true"],
                          [[r["file"], f"failed: {r['error'][:80]}" if "error" in r else f"{r['found']} / {r['true']}"]
                           for r in counts]))
    return section


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m earmark_eval.diarization --audio DIR``: diarize and print the DER table."""
    import json

    parser = argparse.ArgumentParser(prog="python -m earmark_eval.diarization", description=__doc__.split("\n")[0])
    parser.add_argument("--audio", type=Path, default=REAL_DIR, help="folder of recordings (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    args = parser.parse_args(argv)
    from pipeline.ingest import discover

    result = run_diarization(discover([args.audio]), progress=lambda msg: None)
    if not result["files"]:
        raise SystemExit(f"{args.audio}: no recording with reference turns (.rttm)")
    print(json.dumps(result, indent=1) if args.json else markdown(result))


if __name__ == "__main__":
    main()
