"""Hubs: how many synthetic distractors the embedder puts above each question's answer (issue 23, item 2).

    .venv/bin/python -m earmark_eval.hubs --library LIB --out eval/results/scale/hubs [--distractors 800]

The scale eval's libraries lose retrieval quality as they grow even when their distractors are distinct
(eval/results/scale/stretches). This asks why, without building a library: `--distractors` distinct
synthetic passages are made as scale.py makes them (its Archive, from the half of the real recordings
that the scored questions are not about), and for every answerable scored question it counts the
distractors whose cosine with the question (multilingual-e5-small, "query: " / "passage: ") is above
that of the passage of LIB that holds its answer. A distractor above the answer is one that dense search
ranks first; in a library it recurs and has company.

The same count is made with the vectors centred: a mean vector taken away from every vector before the
cosine, either LIB's passages' mean or the mean of the library the distractors would make (LIB's passages
and the distractors: what a library that computed its own mean would use). e5's cosines all lie between about 0.77 and 0.88, a shared direction
that makes passages of many unrelated sentences close to every question (hubs); centring is the
textbook remedy for hubness (Suzuki et al., 2013). Writes report.json and report.md into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from earmark_eval import scale


def run(library: Path, n: int, construction: str) -> dict:
    from pipeline.chunk import passages
    from pipeline.config import EmbedOptions
    from pipeline.embed import load
    from pipeline.records import Transcript
    from pipeline.store import Library

    lib = Library(library)
    sources, kept = scale.split(lib)
    archive = scale.Archive(scale.segment_pool(lib, sources), 20 * n, construction=construction)
    texts: dict[str, None] = {}
    r = 0
    while len(texts) < n and r < 2000:  # (runs of one recording give a few hundred texts at most)
        d, _ = archive.recording(r)
        r += 1
        texts.update(dict.fromkeys(p.text for p in passages(Transcript.from_dict(d))))
    distractors = list(texts)[:n]
    embedder = load(EmbedOptions(model=lib.embed_model))
    rows = lib.db.execute("SELECT file, start, end, text FROM passages WHERE passage_id NOT LIKE '%:t%'").fetchall()
    own = embedder.embed([row[3] for row in rows])
    vectors = embedder.embed(distractors)

    means = {"centred": own.mean(axis=0), "centred_grown": np.vstack([own, vectors]).mean(axis=0)}

    def centred(x: np.ndarray, on: np.ndarray) -> np.ndarray:
        x = x - on
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    # Each way of comparing: the distractors' vectors, and how one vector is made comparable with them.
    ways = {"raw": (vectors, lambda x: x), **{name: (centred(vectors, on), lambda x, on=on: centred(x, on))
                                              for name, on in means.items()}}
    questions = [q for q in scale._questions() if q["answerable"] and all(g["file"] in kept for g in q["gold"])]
    out = []
    for q in questions:
        gold = q["gold"][0]
        best = max((i for i, row in enumerate(rows) if row[0] == gold["file"]),
                   key=lambda i: min(rows[i][2], gold["end"]) - max(rows[i][1], gold["start"]))
        v, g = embedder.embed_query(q["question"]), own[best]
        raw = vectors @ v
        top = int(np.argmax(raw))
        out.append({"id": q["id"], "question": q["question"], "answer_cosine": round(float(g @ v), 4),
                    **{f"above_{name}": int((d @ f(v) > f(g) @ f(v)).sum()) for name, (d, f) in ways.items()},
                    "closest_distractor": distractors[top][:160], "closest_cosine": round(float(raw[top]), 4)})
    return {"library": str(library), "construction": construction, "distractors": len(distractors),
            "questions": len(out), "mean_words": round(float(np.mean([len(t.split()) for t in distractors])), 1),
            **{name: _summary([x[f"above_{name}"] for x in out]) for name in ways}, "per_question": out}


def _summary(above: list[int]) -> dict:
    return {"questions_outranked": sum(a > 0 for a in above), "mean_above": round(float(np.mean(above)), 2),
            "max_above": max(above)}


def write(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    lines = ["# Hubs: distractors the embedder puts above the answer", "",
             f"`{report['command']}`", "",
             f"{report['distractors']} distinct synthetic passages (`--construction {report['construction']}`, "
             f"{report['mean_words']} words on average) against the answer passage of each of the "
             f"{report['questions']} answerable scored questions; how many distractors have a higher cosine "
             "with the question than the answer has, with the vectors as they are and centred on a mean vector "
             "(`eval/hubs.py`'s docstring).", "",
             "| vectors | questions outranked by at least one | distractors above the answer, mean / max |",
             "|---|---|---|"]
    names = {"raw": "as they are", "centred": "centred on LIB's mean",
             "centred_grown": "centred on the grown library's mean (LIB and the distractors)"}
    for name, label in names.items():
        s = report[name]
        lines.append(f"| {label} | {s['questions_outranked']} of {report['questions']} | {s['mean_above']} / {s['max_above']} |")
    lines += ["", "| question | answer cosine | above: raw / centred / centred on the grown library | closest distractor |",
              "|---|---|---|---|"]
    for x in report["per_question"]:
        if x["above_raw"] or x["above_centred"] or x["above_centred_grown"]:
            lines.append(f"| {x['id']} {x['question']} | {x['answer_cosine']} | {x['above_raw']} / {x['above_centred']} / "
                         f"{x['above_centred_grown']} | "
                         f"{x['closest_distractor'].replace('|', '/').replace(chr(10), ' / ')} ({x['closest_cosine']}) |")
    (out / "report.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--library", type=Path, required=True, help="a library of ../shared/data/real")
    ap.add_argument("--out", type=Path, default=Path("eval/results/scale/hubs"))
    ap.add_argument("--distractors", type=int, default=800)
    ap.add_argument("--construction", choices=("runs", "stretches"), default="stretches")
    a = ap.parse_args()
    report = run(a.library, a.distractors, a.construction)
    report["command"] = " ".join(["python -m earmark_eval.hubs", *sys.argv[1:]])
    write(report, a.out)
    print(f"raw: {report['raw']}; centred: {report['centred']}; on the grown library: {report['centred_grown']}")


if __name__ == "__main__":
    main()
