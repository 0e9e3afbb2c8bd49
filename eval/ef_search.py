"""How wide the index's graph search must look: dense hit@1/5 and latency against Chroma's HNSW ef_search.

    .venv/bin/python -m earmark_eval.ef_search --library LIB --source SEVEN --out eval/results/scale/ef-search

LIB is a library the scale eval grew (`python -m earmark_eval.scale --out DIR ...` leaves it in
DIR/library), SEVEN the library of the real recordings it was grown from (the scored questions are
those scale.py scores: about the recordings whose segments made no distractor). For each value of
--values, the collection's ef_search is set, and a new process opens the library (Chroma reads the
setting when it loads the index) and times a dense search of every scored question, once warm; an
exact search (every vector compared, scale.exact_dense) is the ceiling. vectors.EF_SEARCH was chosen
from this sweep on the dev questions (eval/sets/real.jsonl); the collection is left at that value.
Writes report.json and report.md into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

VALUES = (100, 400, 800, 1600, 3200, 6400)


def scored(source: Path) -> list[dict]:
    from earmark_eval import scale
    from pipeline.store import Library

    _, kept = scale.split(Library(source))
    return [q for q in scale._questions() if all(g["file"] in kept for g in q.get("gold", ()))]


def measure(library: Path, source: Path, ef: int, exact: bool) -> dict:
    """In this process: dense hit@1/5 and latency of the scored questions at ef_search `ef`."""
    import numpy as np

    from earmark_eval import metrics, scale
    from pipeline import vectors
    from pipeline.config import EmbedOptions
    from pipeline.embed import load
    from pipeline.search import SearchOptions, search
    from pipeline.store import Library

    vectors.EF_SEARCH = ef  # (opening an index raises a lower ef_search to EF_SEARCH)

    lib = Library(library)
    embedder = load(EmbedOptions(model=lib.embed_model))
    questions = scored(source)
    options = SearchOptions(mode="dense", by_speaker=False)
    for q in questions:  # warm-up: the index loaded, the embedder warm
        search(lib, embedder, q["question"], options)
    hits, ms = {}, []
    for q in questions:
        t = time.perf_counter()
        found = search(lib, embedder, q["question"], options)
        ms.append((time.perf_counter() - t) * 1000)
        hits[q["id"]] = {"hits": [h.to_json() for h in found]}
    r = metrics.retrieval_metrics(questions, hits)
    out = {"ef_search": lib.index.collection.configuration["hnsw"]["ef_search"], "hit@1": r["hit@1"],
           "hit@5": r["hit@5"], "p50_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95))}
    if exact:
        out["exact"] = scale.exact_dense(lib, embedder, questions)
    return out


def set_ef(library: Path, ef: int) -> None:
    from pipeline.store import Library

    Library(library).index.collection.modify(configuration={"hnsw": {"ef_search": ef}})


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--library", type=Path, required=True)
    ap.add_argument("--source", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("eval/results/scale/ef-search"))
    ap.add_argument("--values", default=",".join(map(str, VALUES)))
    ap.add_argument("--measure", type=int, help=argparse.SUPPRESS)  # the child process: at this ef_search
    ap.add_argument("--exact", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.measure:
        print(json.dumps(measure(a.library, a.source, a.measure, a.exact)))
        return
    from pipeline.vectors import EF_SEARCH

    rows = []
    for i, ef in enumerate(int(v) for v in a.values.split(",")):
        set_ef(a.library, ef)
        child = [sys.executable, "-m", "earmark_eval.ef_search", "--library", str(a.library), "--source",
                 str(a.source), "--measure", str(ef)] + (["--exact"] if i == 0 else [])
        rows.append(json.loads(subprocess.run(child, check=True, capture_output=True, text=True).stdout.splitlines()[-1]))
        print(rows[-1], flush=True)
    set_ef(a.library, EF_SEARCH)
    from pipeline.store import Library

    passages = Library(a.library).index.count()
    report = {"command": " ".join(["python -m earmark_eval.ef_search", *sys.argv[1:]]), "passages": passages,
              "machine": f"{os.cpu_count()} cores, load {', '.join(f'{x:.1f}' for x in os.getloadavg())}",
              "questions": len(scored(a.source)), "exact": rows[0].pop("exact"), "rows": rows, "chosen": EF_SEARCH}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "report.json").write_text(json.dumps(report, indent=1))
    lines = ["# Dense search against Chroma's HNSW ef_search", "", f"`{report['command']}`  ",
             f"Machine: {report['machine']} (latency is the whole dense search, the question's embedding included)", "",
             f"{passages:,} passages; the {report['questions']} scored questions of the scale eval (dev). "
             f"An exact search (every vector compared) gives hit@1 / hit@5 {report['exact']['hit@1']:.2f} / "
             f"{report['exact']['hit@5']:.2f}. earmark uses {EF_SEARCH} (vectors.EF_SEARCH).", "",
             "| ef_search | hit@1 | hit@5 | p50 ms | p95 ms |", "|---|---|---|---|---|"]
    lines += [f"| {r['ef_search']} | {r['hit@1']:.2f} | {r['hit@5']:.2f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} |"
              for r in rows]
    (a.out / "report.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
