"""Sweeps of the answer path's hand-set numbers, on dev only: is each threshold justified, or could it
go? (issue 25, item 2)

    python -m earmark_eval.sweeps --library DIR --out eval/results/sweeps [--knobs NAME,...]

Each number (`KNOBS`) is set to each of its values in turn, the others staying at their defaults, and
every dev question (`sets/real.jsonl`) is asked again on the library DIR (the real recordings, ingested).
The answering model's replies are kept by prompt for the whole run, so a value that only changes what is
checked after the model replied costs no generation; a value that changes what the model reads asks it
anew. The report gives, per number and value, answers correct (answerable), abstention (unanswerable)
and citations supported, with a plot per number; the default value is marked. A number whose curve is
flat around its default is not what makes the answers right, and is a candidate for deletion.

The test split (`sets/heldout.jsonl`) is refused: nothing may be chosen by it.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from earmark_eval import metrics
from earmark_eval.references import EVAL_DIR
from earmark_eval.splits import SPLITS

DEV = SPLITS["dev"]
# "module.NAME" (a constant of pipeline/<module>.py) or "options.field" (an AnswerOptions field): values.
KNOBS = {
    # checked after the model replied: cheap, its replies are kept
    "verify.MIN_NOVEL_SUPPORT": [0.3, 0.45, 0.6, 0.75, 1.0],
    "verify.MIN_QUESTION_OVERLAP": [0.15, 0.3, 0.45, 0.6, 1.01],
    "verify.SOME_QUESTION_OVERLAP": [0.0, 0.1, 0.15, 0.25, 1.01],
    "verify.FAIR_QUESTION_SIMILARITY": [0.1, 0.2, 0.3, 0.4, 1.01],
    "verify.CONTEXT_MIN_SIMILARITY": [0.0, 0.1, 0.2, 0.3, 1.01],
    "verify.MIN_QUOTE_OVERLAP": [0.5, 0.6, 0.75, 0.9, 1.01],
    "verify.NAME_MIN_RATIO": [60, 70, 80, 90, 101],
    "answer.READINGS": [1, 2, 3],
    # what the model reads: asked anew
    "options.min_relevance": [0.1, 0.15, 0.2, 0.25, 0.3, 0.35],
    "answer.RELEVANCE_SPREAD": [0.1, 0.15, 0.2, 0.3, 1.0],
    "answer.FOCUS_SENTENCES": [2, 3, 4, 6],
}
# (1.01 switches a check off where it is "at least": no share reaches it.)


def _memoised() -> dict:
    """Keep the answering model's replies by prompt for this run: the answer (`answer._generate`) and the
    other JSON replies (`llm.reply_json`: a speaker named by a deed); and search's hits by question and
    options, which no number swept here changes. Returns the counters."""
    from pipeline import answer, llm, prompts

    counts = {"generated": 0, "reused": 0, "prompt tokens": []}
    generate, reply_json, search, kept, found = answer._generate, llm.reply_json, answer.search, {}, {}

    def searched(library, embedder, question, options):
        key = (question, repr(options))
        if key not in found:
            found[key] = search(library, embedder, question, options)
        return found[key]

    answer.search = searched

    def remembered(key, make):
        if key in kept:
            counts["reused"] += 1
        else:
            counts["generated"] += 1
            kept[key] = make()
        return kept[key]

    def answered(question, hits, options, on_token=None):
        counts["prompt tokens"].append(_prompt_size(question, hits, options))
        return remembered(("answer", question, prompts.passages(hits)),
                          lambda: generate(question, hits, options, None))

    answer._generate = answered
    llm.reply_json = lambda prompt, schema, options=None, **v: remembered(
        (prompt, json.dumps(schema, sort_keys=True), json.dumps(v, sort_keys=True)),
        lambda: reply_json(prompt, schema, options, **v))
    return counts


def _prompt_size(question: str, hits: list, options) -> int | None:
    """Tokens of the answer prompt the model reads for these hits (what its reading time grows with:
    about 70 tokens a second on 2 cores, issue 24); None for a backend that is not llama.cpp."""
    from pipeline import llm, prompts

    chat = llm.chat_model(options)
    if not isinstance(chat, llm.ChatLlamaCpp):
        return None
    messages = prompts.load("answer").format_messages(passages=prompts.passages(hits), question=question)
    return len(llm._prompt_tokens(llm._llama(chat.model_path, chat.n_ctx, chat.n_threads), llm.as_dicts(messages)))


def _set(name: str, value, options):
    """Set one number; returns the AnswerOptions to ask with and a function that puts the default back."""
    import importlib

    where, attr = name.split(".")
    if where == "options":
        return replace(options, **{attr: value}), lambda: None
    module = importlib.import_module(f"pipeline.{where}")
    default = getattr(module, attr)
    setattr(module, attr, value)
    return options, lambda: setattr(module, attr, default)


def default_of(name: str):
    import importlib

    from pipeline.config import AnswerOptions

    where, attr = name.split(".")
    return getattr(AnswerOptions(), attr) if where == "options" else getattr(importlib.import_module(f"pipeline.{where}"), attr)


def sweep(library: Path, knobs: list[str], questions: list[dict], progress=print, done=lambda knobs: None) -> dict:
    from pipeline.answer import ask
    from pipeline.config import AnswerOptions, EmbedOptions
    from pipeline.embed import load
    from pipeline.store import Library

    embedder = load(EmbedOptions())
    lib = Library(library, embedder.name)
    durations = lib.durations()
    counts = _memoised()
    out = {}
    for name in knobs:
        default, rows = default_of(name), []
        for value in KNOBS[name]:
            options, restore = _set(name, value, AnswerOptions())
            started, counts["prompt tokens"] = time.monotonic(), []
            try:
                answers = {q["id"]: ask(lib, embedder, q["question"], options).to_json() for q in questions}
            finally:
                restore()
            a = metrics.answer_metrics(questions, answers, durations)
            rows.append({"value": value, "default": value == default,
                         "answers correct (answerable)": a["accuracy_answerable"],
                         "abstention (unanswerable)": a["abstention_rate"],
                         "citations supported": a["citation_support"],
                         "wrong": sorted(r["id"] for r in a["per_question"] if not r["correct"]),
                         **_tokens(counts["prompt tokens"]),
                         "seconds": round(time.monotonic() - started, 1)})
            progress(f"{name} = {value}: {rows[-1]['answers correct (answerable)']:.2f} / "
                     f"{rows[-1]['abstention (unanswerable)']:.2f} (generated {counts['generated']}, "
                     f"reused {counts['reused']})")
        out[name] = {"default": default, "rows": rows, "commit": f"commit {_commit()}"}
        done(out)  # (the report so far: a long run stopped midway keeps the numbers it finished)
    return out


def _tokens(sizes: list) -> dict:
    """p50 and p95 of the answer prompts' sizes in tokens (None where they are not known)."""
    import numpy as np

    sizes = [n for n in sizes if n is not None]
    if not sizes:
        return {"prompt tokens p50": None, "prompt tokens p95": None}
    return {"prompt tokens p50": int(np.percentile(sizes, 50)), "prompt tokens p95": int(np.percentile(sizes, 95))}


def _commit() -> str | None:
    import subprocess

    shown = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=EVAL_DIR.parent, capture_output=True, text=True)
    return shown.stdout.strip() or None


# The answer path: what turns a question and its hits into a checked answer (search is not in it).
ANSWER_PATH = ("pipeline/answer.py", "pipeline/citations.py", "pipeline/verify.py", "pipeline/speakers.py",
               "pipeline/sentences.py", "pipeline/translation.py", "prompts/answer.toml")


def answer_path_size(before: str | None) -> list[dict]:
    """Lines of each answer-path file now and at git revision ``before`` (None: now only)."""
    import subprocess

    root = EVAL_DIR.parent

    def lines(path: str, rev: str | None) -> int | None:
        if rev is None:
            return len((root / path).read_text().splitlines()) if (root / path).exists() else None
        shown = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=root, capture_output=True, text=True)
        return len(shown.stdout.splitlines()) if shown.returncode == 0 else None
    return [{"file": path, "before": lines(path, before) if before else None, "now": lines(path, None)}
            for path in ANSWER_PATH]


FIGURES = ("answers correct (answerable)", "abstention (unanswerable)", "citations supported")
SIZES = ("prompt tokens p50", "prompt tokens p95")  # what the model reads (runs before these: not kept)


def verdict(rows: list[dict]) -> str:
    """What the sweep says of a number: whether any value beats its default on every figure, and
    whether moving it either way changes anything; values that tie it are named, with the size of
    the prompts they give the model where it was measured (a tie that reads less is faster)."""
    base = next(r for r in rows if r["default"])
    key = lambda r: tuple(r[f] or 0 for f in FIGURES)  # noqa: E731
    better = [r for r in rows if all(a >= b for a, b in zip(key(r), key(base))) and key(r) != key(base)]
    if better:
        return "a value other than the default does as well or better on every figure: " + \
            ", ".join(str(r["value"]) for r in better)
    if all(r["wrong"] == base["wrong"] for r in rows):
        return "no value changes any answer: the number decides nothing on dev"
    ties = [r for r in rows if not r["default"] and key(r) == key(base)]
    size = lambda r: f" ({r[SIZES[0]]} prompt tokens p50)" if r.get(SIZES[0]) is not None else ""  # noqa: E731
    return "the default is best on dev among the values tried" + \
        ("; " + ", ".join(f"{r['value']}{size(r)}" for r in ties) + f" tie it{size(base)}" if ties else "")


def markdown(result: dict, command: str) -> str:
    lines = ["# Sweeps of the answer path's numbers, on dev", "", f"Command (the latest run; numbers an earlier run swept are kept, each with its commit): `{command}`", "",
             "Each number set to each value, the others at their defaults; every dev question asked again "
             f"({result['n']} questions: {result['n_answerable']} answerable, {result['n_unanswerable']} not). "
             "Test is never swept. The default value is in bold.", ""]
    size = result.get("answer_path")
    if size:
        before = result.get("before")
        lines += [f"## The answer path's size (lines){f', at {before} and now' if before else ''}", "",
                  "| file | before | now |", "|---|---|---|"]
        lines += [f"| `{r['file']}` | {r['before'] if r['before'] is not None else '—'} | {r['now']} |" for r in size]
        total = [sum(r[k] or 0 for r in size) for k in ("before", "now")]
        lines += [f"| total | {total[0] if before else '—'} | {total[1]} |", ""]
    for name, knob in result["knobs"].items():
        sizes = [f for f in SIZES if any(r.get(f) is not None for r in knob["rows"])]
        lines += [f"## `{name}` (default {knob['default']})", "", f"![{name}]({name}.png)", "",
                  f"Verdict: {verdict(knob['rows'])}." +
                  (f" Measured at: {knob['commit']}." if knob.get("commit") else ""), "",
                  "| value | " + " | ".join(FIGURES + tuple(sizes)) + " | wrong |",
                  "|---|" + "---|" * (len(FIGURES) + len(sizes) + 1)]
        for r in knob["rows"]:
            v = f"**{r['value']}**" if r["default"] else str(r["value"])
            cells = ["—" if r[f] is None else f"{r[f]:.2f}" for f in FIGURES] + [str(r.get(f, "—")) for f in sizes]
            lines.append(f"| {v} | " + " | ".join(cells) + f" | {', '.join(r['wrong'])} |")
        lines.append("")
    return "\n".join(lines)


def plot(name: str, knob: dict, path: Path) -> None:
    from earmark_eval.plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    xs = list(range(len(knob["rows"])))
    for f in FIGURES:
        ax.plot(xs, [r[f] if r[f] is not None else float("nan") for r in knob["rows"]], marker="o", label=f)
    for x, r in zip(xs, knob["rows"]):
        if r["default"]:
            ax.axvline(x, color="grey", linestyle=":", label="default")
    ax.set_xticks(xs, [str(r["value"]) for r in knob["rows"]])
    ax.set_title(name)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def kept_knobs(report: Path, questions: Path) -> dict:
    """The numbers an earlier run into the same report swept on the same questions: a run of some
    numbers adds to the report, replacing only those it sweeps again (each says its commit)."""
    if not report.exists():
        return {}
    earlier = json.loads(report.read_text())
    return earlier.get("knobs", {}) if Path(earlier.get("set", "")).name == questions.name else {}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--library", type=Path, required=True, help="a library of the real recordings")
    p.add_argument("--out", type=Path, default=EVAL_DIR / "results" / "sweeps")
    p.add_argument("--knobs", default=",".join(KNOBS), help="comma-separated names of KNOBS")
    p.add_argument("--set", type=Path, default=DEV, help="the questions (dev; test is refused)")
    p.add_argument("--before", help="a git revision to compare the answer path's size with")
    args = p.parse_args(argv)
    if args.set.resolve() == SPLITS["test"].resolve():
        raise SystemExit("earmark_eval.sweeps: the test split is never swept; tune on dev (sets/real.jsonl)")
    knobs = [k for k in args.knobs.split(",") if k]
    unknown = [k for k in knobs if k not in KNOBS]
    if unknown:
        raise SystemExit(f"earmark_eval.sweeps: unknown number(s) {', '.join(unknown)}; known: {', '.join(KNOBS)}")
    questions = [json.loads(line) for line in args.set.read_text().splitlines() if line.strip()]
    started = time.monotonic()
    command = "python -m earmark_eval.sweeps --library DIR --out " + str(args.out) + \
        ("" if knobs == list(KNOBS) else f" --knobs {args.knobs}") + (f" --before {args.before}" if args.before else "")
    args.out.mkdir(parents=True, exist_ok=True)
    earlier = kept_knobs(args.out / "report.json", args.set)

    def write(knobs_out: dict) -> None:
        result = {"set": str(args.set), "n": len(questions),
                  "n_answerable": sum(q.get("answerable", True) for q in questions),
                  "n_unanswerable": sum(not q.get("answerable", True) for q in questions),
                  "knobs": {**earlier, **knobs_out}, "wall_seconds": round(time.monotonic() - started, 1),
                  "before": args.before, "answer_path": answer_path_size(args.before)}
        (args.out / "report.json").write_text(json.dumps(result, indent=1))
        for name, knob in knobs_out.items():
            plot(name, knob, args.out / f"{name}.png")
        (args.out / "report.md").write_text(markdown(result, command))
    sweep(args.library, knobs, questions, done=write)
    print(f"wrote {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
