"""Dev and test side by side: the answer path measured on the questions it was tuned on
(`sets/real.jsonl`, dev) and on questions nobody tuned on (`sets/heldout.jsonl`, test), by the same code
on the same library in one run, each figure with its 95% Wilson interval (`metrics.interval`).

    python -m earmark_eval.splits --out eval/results/splits [--library DIR]

Each split is an ordinary eval run (`run.run_eval`) without the stitched archives and the Whisper
baseline, whose figures do not depend on the questions; its full report is kept in OUT/dev and OUT/test.
The issue-25 goals are checked on test, and the dev-test gap on answer accuracy.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from earmark_eval import metrics
from earmark_eval.references import EVAL_DIR, REAL_DIR

SPLITS = {"dev": EVAL_DIR / "sets" / "real.jsonl", "test": EVAL_DIR / "sets" / "heldout.jsonl"}
# Issue 25's goals on test: (figure, at least) and the largest dev-test gap in answer accuracy.
GOALS = {"answers correct (answerable)": 0.85, "abstention (unanswerable)": 0.9, "citations valid": 1.0,
         "citations supported": 0.97, "hybrid hit@1": 0.85, "hybrid hit@5": 0.97}
MAX_GAP = 0.05


def figures(report: dict) -> dict:
    """The compared figures of one eval report: (value, 95% interval or None, n)."""
    a, r = report["answers"], report["retrieval"]["hybrid"]
    hits = [q for q in r["per_question"] if q.get("answerable", True)] if r.get("per_question") else []

    def hit(k):
        rows = [q[f"hit@{k}"] for q in hits]
        return metrics.interval(bool(x) for x in rows) if rows else None

    return {"answers correct (answerable)": (a["accuracy_answerable"], a["interval95"]["accuracy_answerable"], a["n_answerable"]),
            "abstention (unanswerable)": (a["abstention_rate"], a["interval95"]["abstention_rate"], a["n_unanswerable"]),
            "citations valid": (a["citation_validity"], None, None),
            "citations supported": (a["citation_support"], None, None),
            "hybrid hit@1": (r["hit@1"], hit(1), r["n"]), "hybrid hit@5": (r["hit@5"], hit(5), r["n"]),
            "ask p50 s": (report["speed"]["latency"]["ask"]["p50"], None, None)}


def compare(dev: dict, test: dict) -> dict:
    rows = {name: {"dev": dev_fig, "test": figures(test)[name]} for name, dev_fig in figures(dev).items()}
    goals = {name: {"goal": goal, "test": rows[name]["test"][0],
                    "met": rows[name]["test"][0] is not None and rows[name]["test"][0] >= goal}
             for name, goal in GOALS.items()}
    gap = rows["answers correct (answerable)"]["dev"][0] - rows["answers correct (answerable)"]["test"][0]
    goals["dev - test gap, answers correct"] = {"goal": MAX_GAP, "test": gap, "met": abs(gap) <= MAX_GAP}
    return {"rows": rows, "goals": goals}


def markdown(result: dict, command: str) -> str:
    def cell(fig):
        value, ci, n = fig
        if value is None:
            return "—"
        text = f"{value:.2f}"
        if ci:
            text += f" [{ci[0]:.2f}, {ci[1]:.2f}]"
        return text + (f" (n={n})" if n else "")

    lines = ["# Dev and test", "", f"Command: `{command}`  ", f"Answering model: {result.get('model', '?')}", "",
             "dev: `eval/sets/real.jsonl`, the 60 questions every threshold was tuned on; test: "
             "`eval/sets/heldout.jsonl`, 49 questions written from the reference transcripts before earmark "
             "answered any (protocol: `eval/sets/README.md`). Same code, same library, one run; [95% Wilson "
             "interval]. Full reports: [dev](dev/report.md), [test](test/report.md).", "",
             "| figure | dev | test |", "|---|---|---|"]
    lines += [f"| {name} | {cell(r['dev'])} | {cell(r['test'])} |" for name, r in result["rows"].items()]
    lines += ["", "## Goals on test (issue 25)", "", "| goal | target | test | met |", "|---|---|---|---|"]
    for name, g in result["goals"].items():
        target = f"≤ {g['goal']}" if name.startswith("dev - test") else f"≥ {g['goal']}"
        lines.append(f"| {name} | {target} | {g['test']:.2f} | {'yes' if g['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def answering_model() -> str:
    """The answering model as configured (EARMARK_LLM, EARMARK_LLM_MODEL): the split's figures are its."""
    from pipeline.config import AnswerOptions
    from pipeline.models import DEFAULT_LLM

    options = AnswerOptions()
    return f"{options.llm}: {options.model or DEFAULT_LLM}"


def main(argv: list[str] | None = None) -> None:
    import sys

    from earmark_eval.run import run_eval

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=EVAL_DIR / "results" / "splits")
    ap.add_argument("--audio", type=Path, default=REAL_DIR)
    ap.add_argument("--library", type=Path, help="library to ingest into or reuse (default: OUT/library)")
    a = ap.parse_args(argv)
    library = a.library or a.out / "library"
    reports = {name: run_eval(a.audio, path, a.out / name, library_dir=library, set_name=name, long_minutes=(),
                              baseline=False, progress=lambda m: print(m, flush=True))
               for name, path in SPLITS.items()}
    command = " ".join(["python -m earmark_eval.splits", *sys.argv[1:]])
    result = {"command": command, "model": answering_model(), **compare(reports["dev"], reports["test"])}
    (a.out / "report.json").write_text(json.dumps(result, indent=1))
    (a.out / "report.md").write_text(markdown(result, command))
    print((a.out / "report.md").read_text())


if __name__ == "__main__":
    main()
