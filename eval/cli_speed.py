"""How fast answers come from the command line (issue 24, item 1): cold commands, and warm ones
answered by a running `earmark serve` (pipeline/remote.py), on a library of the real recordings.

    .venv/bin/python -m earmark_eval.cli_speed --out eval/results/cli-speed [--n 20]

Measured, every command in a process of its own as a user runs it (wall time, the `earmark` command):
- cold `search` and `ask` (`--local`: no server), a few times each, and where a cold ask's time goes
  (a child that times its imports, model loads, retrieval, first token and whole answer);
- with `earmark serve` running and warmed up: `search` and `ask` from the CLI, and the first streamed
  token of `POST /api/ask`, over the first `--n` answerable questions of eval/sets/real.jsonl;
- answer accuracy (eval's `answer_correct`) of the same questions through the server and answered in
  one process (`pipeline.answer.ask`), in the same run.
Writes report.json and report.md into --out. Timings depend on the machine's load: the report records it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from earmark_eval import metrics
from earmark_eval.reliability.server import free_port
from earmark_eval.references import REAL_DIR

EVAL_DIR = Path(__file__).resolve().parent
EARMARK = str(Path(sys.executable).with_name("earmark"))
QUESTIONS = EVAL_DIR / "sets" / "real.jsonl"
GOALS = {"cold ask wall s": 8.0, "warm ask p50 s": 3.0, "warm ask p95 s": 6.0, "first token p50 s": 1.5,
         "search wall s": 1.0}

# A cold ask, timed stage by stage in a child process (what `earmark ask --local` does, in order).
BREAKDOWN = r"""
import json, sys, time
t0 = time.perf_counter(); marks = {}
def mark(name):
    global t0
    now = time.perf_counter(); marks[name] = round(now - t0, 3); t0 = now
import pipeline.cli
mark("start and CLI import")
from pipeline.answer import ask
from pipeline.config import AnswerOptions, EmbedOptions
from pipeline.embed import load
from pipeline.store import Library
mark("pipeline import")
lib = Library(sys.argv[1]); emb = load(EmbedOptions(model=lib.embed_model))
mark("library and search embedder")
load(EmbedOptions(model=AnswerOptions().support_model)).embed_query("x")
mark("judge (MiniLM)")
from pipeline.llm import warm
warm(AnswerOptions())
mark("answering model load")
first = []
def on_token(_):
    if not first: first.append(time.perf_counter())
start = time.perf_counter()
a = ask(lib, emb, sys.argv[2], on_token=on_token)
marks["retrieval, checks and prompt until the first token"] = round((first[0] if first else time.perf_counter()) - start, 3)
marks["generation and checks after it"] = round(time.perf_counter() - (first[0] if first else time.perf_counter()), 3)
print(json.dumps(marks))
"""


def _wall(args: list[str], env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    run = subprocess.run([EARMARK, *args], capture_output=True, text=True, env=env, timeout=900)
    if run.returncode != 0:
        raise RuntimeError(f"earmark {' '.join(args)}: {run.stderr.strip()[-500:]}")
    return time.perf_counter() - t, run



def _first_token(url: str, question: str) -> tuple[float | None, float, dict]:
    """Seconds to the first streamed token and to the answer, of POST /api/ask (as the CLI reads it)."""
    from pipeline import remote

    t = time.perf_counter()
    first: list[float] = []
    answer = remote.ask((url, None), question, "hybrid", None,
                        on_text=lambda _: first or first.append(time.perf_counter() - t))
    return (first[0] if first else None), time.perf_counter() - t, answer


def _library(lib: Path, audio: Path, progress) -> Path:
    if not (lib / "catalog.sqlite").exists():
        progress(f"ingesting {audio} into {lib}")
        _wall(["--library", str(lib), "ingest", str(audio)])
    return lib


def measure(lib: Path, audio: Path, n: int, repeats: int, progress=print) -> dict:
    lib = _library(lib, audio, progress)
    questions = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    asked = [q for q in questions if q["answerable"]][:n]
    env = {**os.environ, "EARMARK_LOCAL": ""}
    report: dict = {"library": str(lib), "questions": len(asked), "load_before": os.getloadavg()}

    progress("cold search and ask (no server)")
    report["cold_search_s"] = [round(_wall(["--library", str(lib), "search", asked[0]["question"], "--local"],
                                           env)[0], 3) for _ in range(repeats)]
    report["cold_ask_s"] = [round(_wall(["--library", str(lib), "ask", asked[0]["question"], "--local"], env)[0], 3)
                            for _ in range(repeats)]
    child = subprocess.run([sys.executable, "-c", BREAKDOWN, str(lib), asked[0]["question"]], capture_output=True,
                           text=True, timeout=900, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    report["cold_ask_breakdown_s"] = json.loads(child.stdout.strip().splitlines()[-1]) if child.returncode == 0 \
        else {"error": child.stderr.strip()[-300:]}

    progress("in one process: the same questions")
    from pipeline.answer import ask
    from pipeline.embed import load
    from pipeline.store import Library

    library = Library(lib)
    embedder = load()
    here = {}
    for q in asked:
        here[q["id"]] = ask(library, embedder, q["question"]).to_json()
    library.close()

    progress("with earmark serve running")
    port = free_port()
    server = subprocess.Popen([EARMARK, "--library", str(lib), "serve", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/ping", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("earmark serve did not start")
                time.sleep(0.5)
        _first_token(url, asked[0]["question"])  # waits for the warm-up (judge, model) to finish
        report["warm_search_s"] = [round(_wall(["--library", str(lib), "search", q["question"]], env)[0], 3)
                                   for q in asked[:max(repeats, 5)]]
        walls, there = [], {}
        for q in asked:
            seconds, run = _wall(["--library", str(lib), "ask", q["question"], "--json"], env)
            if "answered by earmark serve" not in run.stderr:
                raise RuntimeError(f"the CLI did not use the server: {run.stderr.strip()[-300:]}")
            walls.append(round(seconds, 3))
            there[q["id"]] = json.loads(run.stdout)
        report["warm_ask_s"] = walls
        firsts = [_first_token(url, q["question"]) for q in asked]
        report["first_token_s"] = [round(f, 3) for f, _, _ in firsts if f is not None]
        report["api_ask_s"] = [round(total, 3) for _, total, _ in firsts]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)

    report["accuracy"] = {
        "server": sum(metrics.answer_correct(q, there[q["id"]]) for q in asked) / len(asked),
        "one process": sum(metrics.answer_correct(q, here[q["id"]]) for q in asked) / len(asked),
        "same answer": sum(there[q["id"]]["answer"] == here[q["id"]]["answer"] for q in asked)}
    report["answers"] = {q["id"]: {"question": q["question"], "server": there[q["id"]]["answer"],
                                   "one process": here[q["id"]]["answer"]} for q in asked}
    report["load_after"] = os.getloadavg()
    median = lambda xs: metrics.percentile(xs, 50)  # noqa: E731
    report["figures"] = {
        "cold ask wall s": median(report["cold_ask_s"]), "cold search wall s": median(report["cold_search_s"]),
        "warm ask p50 s": median(walls), "warm ask p95 s": metrics.percentile(walls, 95),
        "first token p50 s": median(report["first_token_s"]) if report["first_token_s"] else None,
        "first token p95 s": metrics.percentile(report["first_token_s"], 95) if report["first_token_s"] else None,
        "search wall s": median(report["warm_search_s"])}
    return report


def markdown(r: dict, command: str) -> str:
    f = r["figures"]
    goal = {"cold ask wall s": GOALS["cold ask wall s"], "warm ask p50 s": GOALS["warm ask p50 s"],
            "warm ask p95 s": GOALS["warm ask p95 s"], "first token p50 s": GOALS["first token p50 s"],
            "search wall s": GOALS["search wall s"]}
    rows = [f"| {k} | {v:.2f} | {'≤ ' + format(goal[k], 'g') if k in goal else ''} | "
            f"{'yes' if k in goal and v <= goal[k] else 'no' if k in goal else ''} |"
            for k, v in f.items() if v is not None]
    b = r["cold_ask_breakdown_s"]
    a = r["accuracy"]
    return "\n".join([
        "# CLI speed: cold commands and commands answered by a running server", "",
        f"`{command}`", "",
        f"Library: the real recordings ({r['library']}); {r['questions']} answerable questions of "
        f"eval/sets/real.jsonl. Load average before / after: {r['load_before'][0]:.1f} / {r['load_after'][0]:.1f} "
        "(2 cores: above 2, every figure is slowed by other work).", "",
        "| measure | seconds | goal | met |", "|---|---|---|---|", *rows, "",
        "**Where a cold ask's time goes** (one child process, in order): "
        + "; ".join(f"{k} {v:.2f} s" for k, v in b.items() if isinstance(v, (int, float))) + ".", "",
        f"**Accuracy, same questions, same run:** through the server {a['server']:.2f}, in one process "
        f"{a['one process']:.2f}; the same answer text {a['same answer']}/{r['questions']}.", "",
        "Search through the server is the CLI's start (Python, click) plus one HTTP request; a cold search "
        "imports Chroma and loads the embedder each time. A warm ask is the server's retrieval, checks and "
        "the model's generation; a cold one also loads the judge (MiniLM on onnxruntime) and the "
        "answering model.", ""])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("eval/results/cli-speed"))
    ap.add_argument("--audio", type=Path, default=REAL_DIR)
    ap.add_argument("--library", type=Path, default=Path(tempfile.gettempdir()) / "earmark-cli-speed-library",
                    help="made from --audio if it does not exist yet (kept for the next run)")
    ap.add_argument("--n", type=int, default=20, help="answerable questions asked warm (and in one process)")
    ap.add_argument("--repeats", type=int, default=3, help="cold runs of each command")
    a = ap.parse_args()
    command = f".venv/bin/python -m earmark_eval.cli_speed --out {a.out} --n {a.n}"
    a.out.mkdir(parents=True, exist_ok=True)
    r = measure(a.library, a.audio, a.n, a.repeats, lambda m: print(m, file=sys.stderr, flush=True))
    (a.out / "report.json").write_text(json.dumps(r, indent=1) + "\n")
    (a.out / "report.md").write_text(markdown(r, command))
    print((a.out / "report.md").read_text())


if __name__ == "__main__":
    main()
