"""Search at scale (issue 23, items 1 and 2): libraries of 10k, 100k and 1M passages, built with the
real store and index code, and what search, ask and `serve` cost on them.

    .venv/bin/python -m earmark_eval.scale --out eval/results/scale [--sizes 10000,100000,1000000]

How a library is made. It starts as a copy of a library of the real recordings (../shared/data/real,
ingested by `earmark ingest` if --source is not given), and grows by synthetic one-hour recordings
until it holds each size in turn (10k, then 100k, then 1M: one library, measured at each size). A
synthetic recording is the real recordings' transcribed segments recombined: runs of consecutive
segments of one real recording, one after another, with their words, word times (shifted),
speakers and languages, so BM25, phrase matching, speaker and language filters see real transcript
text. The real recordings are split in two, alternately by name: the synthetic recordings are made
of one half's segments, and the eval's questions about the other half (and the unanswerable ones)
are scored, so every synthetic passage is a distractor: speech of other recordings, never a copy of
the answer or of the sentences around it (a copy would be a right answer in another file). Search
latency is measured over all the questions. The transcripts are written as the store writes them (store.write_atomic, the same JSON), then
catalogued and indexed by ingest's own `index_transcript` (catalog row, Chroma, FTS5).
Embeddings are all real: a synthetic recording is made of blocks (`Archive`, --construction: runs of
3 to 12 consecutive segments of one real recording, or 3 to 12 segments in one to three stretches of
several; --blocks of them in all) parted by silences longer than the chunker's max_gap, so each block
is cut into passages of its own, and each distinct passage text is embedded once with the library's
embedder (about 15 passages/s on 2 cores: a million distinct passages would take most of a day;
--vectors FILE.npz keeps them for the next run, `CachedEmbedder`). The
library's passages are the blocks' distinct passages recurring across recordings and times; the
report says how many there are and how often each recurs at each size.

Measured at each size, after a warm-up, in this process (the library's own code, warm models):
search latency per mode (hybrid, dense, lexical; exact phrase; hybrid with a file, a speaker and a date
filter), `ask` latency less the model's generation (time spent in answer._generate is subtracted),
hit@1/5 and answer accuracy of the scored questions (beside the same questions on the 7-minute
library; up to EXACT_UP_TO passages also of dense search done exactly, every vector compared, to tell
what the index's graph search loses from what the embedder does), build time, disk size, and the resident memory of a real
`earmark serve` on the library after searches and asks through its API.
Writes report.json, report.md and latency.png into --out.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from earmark_eval import metrics
from earmark_eval.references import REAL_DIR

EVAL_DIR = Path(__file__).resolve().parent
QUESTIONS = EVAL_DIR / "sets" / "real.jsonl"
PHRASES = EVAL_DIR / "phrases.json"
SIZES = (10_000, 100_000, 1_000_000)
RECORDING_SECONDS = 3600.0  # each synthetic recording is an hour long
SEED = 0
EXACT_UP_TO = 200_000  # libraries searched exactly too (exact_dense): 300 MB of vectors at this size
GOALS = {"hybrid p95 ms at 100k": 50.0, "hybrid p95 ms at 1M": 150.0, "hybrid p95 growth 10k to 1M": 3.0,
         "serve RSS GiB at 1M": 4.0, "hit@1 drop at 100k": 0.05, "hit@5 drop at 100k": 0.05,
         "answer accuracy drop at 100k": 0.05}
EARMARK = (str(Path(sys.executable).with_name("earmark")),)


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ---------------------------------------------------------------- the library


def source_library(given: Path | None, out: Path, say) -> Path:
    """A library of the real recordings: the one given, else one ingested into OUT/source."""
    if given is not None:
        return given
    lib = out / "source"
    if not (lib / "catalog.sqlite").exists():
        from earmark_eval.reliability.server import ingest

        say(f"ingesting {REAL_DIR} into {lib}")
        ingest(EARMARK, lib, [REAL_DIR], out / "ingest.log")
    return lib


def split(lib) -> tuple[list[str], list[str]]:
    """The real recordings by name, alternately: (distractor sources, scored)."""
    names = sorted(r.file_name for r in lib.recordings())
    return names[1::2], names[0::2]


def segment_pool(lib, files: list[str]) -> list[list[dict]]:
    """Runs of consecutive indexable segments of these recordings."""
    runs = []
    for rec in lib.recordings():
        if rec.file_name not in files:
            continue
        run: list[dict] = []
        for s in lib.transcript(rec.sha256).segments:
            if s.flag is None and s.words:
                run.append(_segment_dict(s))
            elif run:
                runs.append(run)
                run = []
        if run:
            runs.append(run)
    return runs


def _segment_dict(s) -> dict:
    from dataclasses import asdict

    return asdict(s)


class Archive:
    """Synthetic one-hour recordings made of blocks parted by a silence longer than the chunker's max_gap,
    so each block is cut into passages of its own. `max_blocks` blocks are drawn once (seeded) and the
    recordings are made of them, so the library's distinct passages are the blocks' (each embedded once:
    `CachedEmbedder`) and the rest recur. Two constructions (--construction):

    - "runs": a block is a run of 3 to 12 consecutive segments of one real recording. There are about
      300 such runs in the pool, so a million passages are ~250 texts in ~4,000 copies each, and one
      distractor's copies fill every list of candidates (dense hit@5 0.0 at 1M): what the quality figures
      measure is copies as much as distractors.
    - "stretches": a block is 3 to 12 segments in one to three stretches of consecutive segments, each of
      a real recording, joined by short pauses (speech that moves from one recording's words to
      another's, as a meeting moves between topics): as many distinct texts as one pays to embed.
    """

    def __init__(self, pool: list[list[dict]], max_blocks: int, seed: int = SEED, construction: str = "runs"):
        from pipeline.config import ChunkOptions

        rng = random.Random(seed)
        if construction == "runs":
            runs = [(i, a, n) for i, run in enumerate(pool) for a in range(len(run))
                    for n in range(3, 13) if a + n <= len(run)] or [(i, 0, len(run)) for i, run in enumerate(pool)]
            runs = sorted(rng.sample(runs, max_blocks)) if len(runs) > max_blocks else runs
            self.blocks = [((i, a, n),) for i, a, n in runs]
        else:
            blocks: set = set()
            for _ in range(50 * max_blocks):
                if len(blocks) >= max_blocks:
                    break
                want, block, size = rng.randint(3, 12), [], 0
                for _ in range(3):
                    i = rng.randrange(len(pool))
                    a = rng.randrange(len(pool[i]))
                    n = min(len(pool[i]) - a, want - size)
                    block.append((i, a, n))
                    size += n
                    if size >= want:
                        break
                blocks.add(tuple(block))
            self.blocks = sorted(blocks)
        self.pool, self.seed, self.gap = pool, seed, ChunkOptions().max_gap

    def recording(self, n: int) -> tuple[dict, str]:
        """(transcript dict, recorded_at) of synthetic recording n."""
        rng = random.Random(f"{self.seed}:{n}")
        name = f"archive-{n:05d}.mp3"
        sha = hashlib.sha256(f"earmark-scale:{self.seed}:{n}".encode()).hexdigest()
        segments, clock = [], 0.0
        while clock < RECORDING_SECONDS:
            block = self.blocks[rng.randrange(len(self.blocks))]
            clock += rng.uniform(self.gap + 0.5, self.gap + 4.0)
            for k, (i, a, m) in enumerate(block):
                if k:
                    clock = segments[-1]["end"] + rng.uniform(0.3, 1.0)  # a pause, not a new passage
                take = self.pool[i][a:a + m]
                shift = clock - take[0]["start"]
                for s in take:
                    segments.append({**s, "id": len(segments), "start": round(s["start"] + shift, 3),
                                     "end": round(s["end"] + shift, 3),
                                     "words": [{**w, "start": round(w["start"] + shift, 3),
                                                "end": round(w["end"] + shift, 3)} for w in s["words"]]})
            clock = segments[-1]["end"]
        day = time.strftime("%Y-%m-%d", time.gmtime(1546300800 + (n * 7919 % 2920) * 86400))  # 2019-2026
        transcript = {"file_hash": sha, "file_name": name, "duration": round(clock + 1.0, 3), "segments": segments,
                      "model": {"name": "synthetic", "backend": "earmark_eval.scale"}, "created": f"{day}T00:00:00+00:00",
                      "translations": []}
        return transcript, day


class CachedEmbedder:
    """The library's embedder, each distinct passage text embedded once (a block's passages recur).

    With `kept` (--vectors FILE.npz), the vectors of texts an earlier run embedded with the same
    embedder are read from that file and new ones added to it (`keep`): a rerun with another index or
    search code pays for no embedding it already paid for."""

    def __init__(self, real, kept: Path | None = None):
        self.real, self.name, self.kept = real, real.name, kept
        self.vectors: dict[str, np.ndarray] = {}
        self.passages = 0
        self.read = 0  # vectors read from `kept`
        self.used: set[str] = set()  # the distinct texts embedded for this library
        if kept is not None and kept.exists():
            with np.load(kept) as f:
                if str(f["embedder"]) != self.name:
                    raise SystemExit(f"{kept} holds vectors of {f['embedder']}, not {self.name}")
                self.vectors = dict(zip(f["texts"].tolist(), f["vectors"]))
            self.read = len(self.vectors)

    def keep(self) -> None:
        if self.kept is not None and self.vectors:
            tmp = self.kept.with_name(f".{self.kept.name}.tmp.npz")
            np.savez(tmp, embedder=np.array(self.name), texts=np.array(list(self.vectors)),
                     vectors=np.stack(list(self.vectors.values())))
            os.replace(tmp, self.kept)

    def embed(self, texts: list[str]) -> np.ndarray:
        self.used.update(texts)
        new = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        if new:
            self.vectors.update(zip(new, self.real.embed(new)))
        self.passages += len(texts)
        return np.stack([self.vectors[t] for t in texts]) if texts else np.zeros((0, 384), dtype=np.float32)


def grow(lib, embedder: CachedEmbedder, archive: Archive, target: int, state: dict, say) -> None:
    """Add synthetic recordings until the library holds `target` passages."""
    from pipeline.config import ChunkOptions
    from pipeline.ingest import index_transcript
    from pipeline.records import Transcript
    from pipeline.atomic import write_atomic

    options = ChunkOptions()
    t0 = time.perf_counter()
    while state["passages"] < target:
        d, day = archive.recording(state["next"])
        write_atomic(lib.transcript_path(d["file_hash"]), json.dumps(d, ensure_ascii=False).encode())
        t = Transcript.from_dict(d)
        lib.upsert_recording(d["file_hash"], file_name=d["file_name"], path="", size=0, duration=d["duration"],
                             status="transcribed", languages=t.languages, transcribe_model=d["model"],
                             recorded_at=day, recorded_from="synthetic")
        state["passages"] += index_transcript(lib, embedder, t, options)
        state["next"] += 1
        if state["next"] % 200 == 0:
            say(f"  {state['passages']} passages in {state['next']} synthetic recordings "
                f"({time.perf_counter() - t0 + state['build_s']:.0f} s)")
    state["build_s"] += time.perf_counter() - t0


# ---------------------------------------------------------------- measuring


def _ms(fn, *args, **kwargs) -> tuple[object, float]:
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, (time.perf_counter() - t) * 1000


def measure_search(lib, embedder, questions: list[dict], phrases: list[str], speaker: str | None,
                   scored: list[dict]) -> dict:
    """Latencies (ms) per mode and filter, each over the questions once untimed (the warm-up: indexes
    opened, caches filled, as in a running server) and once timed; hit@1/5 per mode.

    The modes read the question plainly (`by_speaker=False`): a question naming a speaker by a deed
    ("what did the one who agreed say?") asks the answering model who that is, which is an LLM call,
    not search. "hybrid, as asked" reads speakers as `earmark search` does: the retrieval quality
    compared with the 7-minute library's, and its latency, LLM calls included.
    """
    from pipeline.search import SearchOptions, exact, search

    variants = {"hybrid": SearchOptions(by_speaker=False), "dense": SearchOptions(mode="dense", by_speaker=False),
                "lexical": SearchOptions(mode="lexical", by_speaker=False),
                "hybrid, file filter": SearchOptions(file="archive-*7.mp3", by_speaker=False),
                "hybrid, date filter": SearchOptions(since="2020-01-01", until="2020-09-30", by_speaker=False),
                "hybrid, speaker filter": SearchOptions(speaker=speaker, by_speaker=False),
                "hybrid, as asked": SearchOptions()}
    out: dict = {"latency_ms": {}, "retrieval": {}}
    for name, options in variants.items():
        for q in questions:
            search(lib, embedder, q["question"], options)
        ms, hits = [], {}
        for q in questions:
            found, dt = _ms(search, lib, embedder, q["question"], options)
            ms.append(dt)
            hits[q["id"]] = {"hits": [h.to_json() for h in found]}
        out["latency_ms"][name] = metrics.latency_summary(ms)
        if "filter" not in name:
            r = metrics.retrieval_metrics(scored, hits)
            out["retrieval"][name] = {"hit@1": r["hit@1"], "hit@5": r["hit@5"], "mrr": r["mrr"]}
    for p in phrases:
        exact(lib, p)
    ms, counts = [], []
    for p in phrases:
        found, dt = _ms(exact, lib, p)
        ms.append(dt)
        counts.append(len(found))
    out["latency_ms"]["exact phrase"] = {**metrics.latency_summary(ms), "occurrences_mean": sum(counts) / len(counts)}
    return out


def exact_dense(lib, embedder, scored: list[dict]) -> dict:
    """hit@1/5 of dense search done exactly (every passage's vector against the question's, as the index
    compares them), one hit per moment as search gives them: what the embedder finds, beside what the
    index's HNSW graph finds ("dense"), which looks at EF_SEARCH candidates, not at every passage."""
    from pipeline.records import Hit
    from pipeline.search import one_per_moment

    index, ids, rows, metas = lib.index, [], [], []
    for page_ids, page, page_metas in index.pages(None, offset=True):
        ids += page_ids
        rows.append(page)
        metas += page_metas
    vectors = np.vstack(rows)
    hits = {}
    for q in scored:
        sims = vectors @ index.comparable(embedder.embed_query(q["question"]))
        top = [Hit(passage_id=ids[i], file_hash=metas[i]["file_hash"], file=metas[i]["file"], start=metas[i]["start"],
                   end=metas[i]["end"], text="", score=float(sims[i])) for i in np.argsort(-sims)[:50]]
        hits[q["id"]] = {"hits": [h.to_json() for h in one_per_moment(top)]}
    r = metrics.retrieval_metrics(scored, hits)
    return {"hit@1": r["hit@1"], "hit@5": r["hit@5"], "mrr": r["mrr"]}


def measure_asks(lib, embedder, questions: list[dict]) -> dict:
    """Answers to every question; latency less the time inside the model's generation (answer._generate)."""
    from pipeline import answer as answering

    spent: list[float] = []
    generate = answering._generate

    def timed_generate(*args, **kwargs):
        t = time.perf_counter()
        try:
            return generate(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - t)

    answering._generate = timed_generate
    try:
        answering.ask(lib, embedder, questions[0]["question"])  # warm-up: the models load
        answers, ms, gen_ms = {}, [], []
        for q in questions:
            spent.clear()
            a, dt = _ms(answering.ask, lib, embedder, q["question"])
            answers[q["id"]] = a.to_json()
            gen_ms.append(sum(spent) * 1000)
            ms.append(dt - gen_ms[-1])
    finally:
        answering._generate = generate
    scored = metrics.answer_metrics(questions, answers, lib.durations())
    return {"latency_ms_without_generation": metrics.latency_summary(ms), "generation_ms": metrics.latency_summary(gen_ms),
            "accuracy_answerable": scored["accuracy_answerable"],
            "accuracy_unanswerable": scored["accuracy_unanswerable"], "accuracy": scored["accuracy"],
            "answers": answers}


def measure_serve(root: Path, out: Path, questions: list[dict]) -> dict:
    """RSS of a real `earmark serve` on the library after 30 searches and 3 asks through its API."""
    import httpx

    from earmark_eval.reliability.server import Server

    with Server(EARMARK, root, out / "serve.log") as s:
        started = s.rss_mib()
        for q in questions[:30]:
            httpx.get(s.url + "/api/search", params={"q": q["question"], "k": 10}, timeout=120).raise_for_status()
        for q in questions[:3]:
            httpx.post(s.url + "/api/ask", json={"question": q["question"]}, timeout=300).raise_for_status()
        return {"rss_mib_started": round(started, 1), "rss_mib_after_queries": round(s.rss_mib(), 1)}


def measure_size(lib, root: Path, embedder, questions, phrases, speaker, scored, out: Path, asks: bool, say) -> dict:
    n = lib.db.execute("SELECT COALESCE(SUM(passages), 0) FROM recordings").fetchone()[0]
    rec = lib.db.execute("SELECT COUNT(*), COALESCE(SUM(duration), 0) FROM recordings").fetchone()
    say(f"measuring at {n} passages ({rec[0]} recordings, {rec[1] / 3600:.0f} h)")
    row = {"passages": n, "recordings": rec[0], "hours": round(rec[1] / 3600, 1),
           "disk_bytes": {"catalog": sum(_du(p) if p.is_dir() else p.stat().st_size
                                         for p in root.glob("catalog.sqlite*")),
                          "transcripts": _du(root / "transcripts"), "chroma": _du(root / "chroma")}}
    row.update(measure_search(lib, embedder, questions, phrases, speaker, scored))
    if n <= EXACT_UP_TO:
        row["retrieval"]["dense, exact"] = exact_dense(lib, embedder, scored)
    if asks:
        row["ask"] = measure_asks(lib, embedder, scored)
    lib.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    row["serve"] = measure_serve(root, out, questions)
    say(f"  hybrid p95 {row['latency_ms']['hybrid']['p95']:.1f} ms; serve RSS "
        f"{row['serve']['rss_mib_after_queries']:.0f} MiB")
    return row


def goals(report: dict) -> dict:
    """Each goal of issue 23 item 1-2 with its measured value (None: that size was not measured)."""
    by = {r["passages_target"]: r for r in report["sizes"]}
    base = report["seven_minutes"]

    def p95(size):
        return by[size]["latency_ms"]["hybrid"]["p95"] if size in by else None

    def drop(size, key):
        if size not in by:
            return None
        if key == "answer":
            return (base["ask"]["accuracy"] - by[size]["ask"]["accuracy"]) if "ask" in by[size] else None
        return base["retrieval"]["hybrid, as asked"][key] - by[size]["retrieval"]["hybrid, as asked"][key]

    measured = {"hybrid p95 ms at 100k": p95(100_000), "hybrid p95 ms at 1M": p95(1_000_000),
                "hybrid p95 growth 10k to 1M": p95(1_000_000) / p95(10_000) if p95(1_000_000) and p95(10_000) else None,
                "serve RSS GiB at 1M": by[1_000_000]["serve"]["rss_mib_after_queries"] / 1024 if 1_000_000 in by else None,
                "hit@1 drop at 100k": drop(100_000, "hit@1"), "hit@5 drop at 100k": drop(100_000, "hit@5"),
                "answer accuracy drop at 100k": drop(100_000, "answer")}
    return {k: {"goal": GOALS[k], "measured": v, "met": None if v is None else v <= GOALS[k]} for k, v in measured.items()}


# ---------------------------------------------------------------- report


def write_report(report: dict, out: Path) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    plot(report, out / "latency.png")
    lines = ["# Search at scale", "", f"Command: `{report['command']}`  ", f"Machine: {report['machine']}  ",
             f"Built and measured in {report['wall_s'] / 60:.0f} min. How the libraries are made: "
             "`eval/scale.py`'s docstring. ", f"Every passage has its real embedding: the synthetic passages are "
             f"{report['embedding']['distinct_passages']:,} distinct texts (from {report['pool']['blocks']:,} blocks), "
             "each embedded once and recurring (copies of each at each size: "
             + ", ".join(f"{r['passages'] / report['embedding']['distinct_passages']:,.0f} at {r['passages']:,}"
                         for r in report["sizes"]) + "); a distractor that outranks an answer does so in all its "
             "copies, which crowd the lists of candidates the more there are, so the quality figures are a worst "
             "case for a library of this size. ",
             f"Synthetic recordings made of {len(report['pool']['from'])} real recordings' segments; quality scored on "
             f"{report['scored']['questions']} questions ({report['scored']['unanswerable']} unanswerable) about the "
             f"other {len(report['scored']['recordings'])}: {', '.join(report['scored']['recordings'])}.", "",
             "## Goals", "", "| goal | target | measured | met |", "|---|---|---|---|"]
    for k, g in report["goals"].items():
        v = "not measured" if g["measured"] is None else f"{g['measured']:.3f}"
        lines.append(f"| {k} | ≤ {g['goal']} | {v} | {'—' if g['met'] is None else 'yes' if g['met'] else '**no**'} |")
    sizes = report["sizes"]
    lines += ["", "## Search latency (ms, p50 / p95 / p99, warm, in one process)", "",
              "| mode | " + " | ".join(f"{r['passages']:,} passages" for r in sizes) + " |",
              "|---|" + "---|" * len(sizes)]
    for mode in sizes[0]["latency_ms"]:
        cells = [f"{r['latency_ms'][mode]['p50']:.1f} / {r['latency_ms'][mode]['p95']:.1f} / "
                 f"{r['latency_ms'][mode]['p99']:.1f}" for r in sizes]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    base = report["seven_minutes"]
    every = [base, *sizes]
    lines += ["", "## Retrieval (hit@1 / hit@5 of the scored questions)", "",
              "\"dense, exact\" compares the question with every passage's vector (`exact_dense`); \"dense\" is "
              "the index's HNSW search, which looks at a bounded number of candidates (vectors.EF_SEARCH).", "",
              "| mode | 7 minutes | " + " | ".join(f"{r['passages']:,}" for r in sizes) + " |",
              "|---|---|" + "---|" * len(sizes)]
    for mode in dict.fromkeys(m for r in every for m in r["retrieval"]):
        cells = [f"{r['retrieval'][mode]['hit@1']:.2f} / {r['retrieval'][mode]['hit@5']:.2f}" if mode in r["retrieval"]
                 else "—" for r in every]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    lines += ["", "## Library, ask and serve", "", "| | 7 minutes | " + " | ".join(f"{r['passages']:,}" for r in sizes) + " |",
              "|---|---|" + "---|" * len(sizes)]
    rows_out = [("recordings / hours", lambda r: f"{r['recordings']} / {r['hours']}"),
                ("hybrid hit@1 / hit@5 (as asked)", lambda r: f"{r['retrieval']['hybrid, as asked']['hit@1']:.2f} / {r['retrieval']['hybrid, as asked']['hit@5']:.2f}"),
                ("answer accuracy", lambda r: f"{r['ask']['accuracy']:.2f}" if "ask" in r else "—"),
                ("ask p50 / p95 ms, less generation", lambda r: "{p50:.0f} / {p95:.0f}".format(**r["ask"]["latency_ms_without_generation"]) if "ask" in r else "—"),
                ("build s (cumulative)", lambda r: f"{r.get('build_s', 0):.0f}"),
                ("disk MiB: catalog / transcripts / chroma", lambda r: " / ".join(f"{v / 2**20:.0f}" for v in r["disk_bytes"].values())),
                ("serve RSS MiB after queries", lambda r: f"{r['serve']['rss_mib_after_queries']:.0f}")]
    for label, cell in rows_out:
        lines.append(f"| {label} | {cell(base)} | " + " | ".join(cell(r) for r in sizes) + " |")
    if "serve_again" in report:
        again = report["serve_again"]
        lines += ["", f"The serve RSS of the 7-minute library and of the largest was measured again at {again['commit']} "
                  f"(`{again['command']}`; the smaller libraries were grown into the largest); before: "
                  f"{again['before_mib']['seven_minutes']:.0f} and {again['before_mib']['largest']:.0f} MiB."]
    lines += ["", "![latency against library size](latency.png)", ""]
    (out / "report.md").write_text("\n".join(lines))


def plot(report: dict, path: Path) -> None:
    from earmark_eval.plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sizes = report["sizes"]
    for mode in sizes[0]["latency_ms"]:
        ax.plot([r["passages"] for r in sizes], [r["latency_ms"][mode]["p95"] for r in sizes], marker="o", label=mode)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("passages in the library")
    ax.set_ylabel("search p95, ms")
    ax.axhline(50, color="grey", lw=0.5, ls="--")
    ax.axhline(150, color="grey", lw=0.5, ls=":")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _questions() -> list[dict]:
    return [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]


def run(out: Path, sizes: list[int], source: Path | None, blocks: int, asks: set[int], keep: bool = False,
        say=print, construction: str = "runs", kept_vectors: Path | None = None) -> dict:
    from pipeline.config import EmbedOptions
    from pipeline.embed import load
    from pipeline.store import Library

    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    questions = _questions()
    phrases = [p["phrase"] for p in json.loads(PHRASES.read_text())]
    src = source_library(source, out, say)
    base_lib = Library(src)
    embedder = load(EmbedOptions(model=base_lib.embed_model))
    sources, kept = split(base_lib)
    pool = segment_pool(base_lib, sources)
    scored = [q for q in questions if all(g["file"] in kept for g in q.get("gold", ()))]
    speakers = [s["speaker"] for run in pool for s in run if s["speaker"]]
    speaker = max(set(speakers), key=speakers.count) if speakers else None
    say("the 7-minute library")
    seven = measure_size(base_lib, src, embedder, questions, phrases, speaker, scored, out, True, say)
    base_lib.close()

    root, built = out / "library", out / "build.json"
    if not keep or not built.exists():
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(src, root)
        built.write_text(json.dumps({"next": 0, "build_s": 0.0}))
    lib = Library(root)
    archive = Archive(pool, blocks, construction=construction)
    cached = CachedEmbedder(embedder, kept_vectors)
    # --keep: the library of an earlier run grows on from where it stopped (its synthetic recordings
    # are the same ones: made from their number and the seed), and is measured with the code as it is.
    state = {"passages": lib.db.execute("SELECT SUM(passages) FROM recordings").fetchone()[0], **json.loads(built.read_text())}
    rows = []
    for size in sizes:
        say(f"growing the library to {size} passages")
        with lib.writing():
            grow(lib, cached, archive, size, state, say)
        cached.keep()
        built.write_text(json.dumps({"next": state["next"], "build_s": state["build_s"]}))
        row = measure_size(lib, root, embedder, questions, phrases, speaker, scored, out, size in asks, say)
        rows.append({"passages_target": size, "build_s": round(state["build_s"], 1), **row})
        report = {"command": " ".join(["python -m earmark_eval.scale", *sys.argv[1:]]),
                  "machine": f"{os.cpu_count()} cores, load {', '.join(f'{x:.1f}' for x in os.getloadavg())}",
                  "pool": {"runs": len(pool), "segments": sum(map(len, pool)), "blocks": len(archive.blocks),
                           "construction": construction,
                           "from": sources},
                  "scored": {"recordings": kept, "questions": len(scored),
                             "unanswerable": sum(not q["answerable"] for q in scored)},
                  "embedding": {"distinct_passages": len(cached.used), "passages": cached.passages,
                                "read_from_file": cached.read},
                  "seven_minutes": seven, "sizes": rows, "wall_s": time.perf_counter() - started}
        report["goals"] = goals(report)
        write_report(report, out)  # after each size: a long run that stops still leaves a report
    lib.close()
    return report


def serve_again(out: Path, source: Path) -> dict:
    """Measure `serve`'s resident memory again, with the code as it is now, on the 7-minute library and on
    the largest library an earlier run left in --out (it grew through every size), and update that
    run's report: memory is what a change to loading models moves, and rebuilding a million passages
    to see it takes an hour."""
    report = json.loads((out / "report.json").read_text())
    questions = _questions()
    before = {"seven_minutes": report["seven_minutes"]["serve"]["rss_mib_after_queries"],
              "largest": report["sizes"][-1]["serve"]["rss_mib_after_queries"]}
    report["seven_minutes"]["serve"] = measure_serve(source, out, questions)
    report["sizes"][-1]["serve"] = measure_serve(out / "library", out, questions)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=EVAL_DIR).stdout.strip()
    report["serve_again"] = {"commit": commit, "before_mib": before,
                             "command": " ".join(["python -m earmark_eval.scale", *sys.argv[1:]])}
    report["goals"] = goals(report)
    write_report(report, out)
    return report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=EVAL_DIR / "results" / "scale")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), help="passage counts, ascending")
    ap.add_argument("--source", type=Path, help="a library of ../shared/data/real (default: ingest one)")
    ap.add_argument("--blocks", type=int, default=1500, help="distinct blocks the synthetic recordings are made of")
    ap.add_argument("--construction", choices=("runs", "stretches"), default="runs",
                    help="how synthetic blocks are made (Archive): runs of one recording, or stretches of several")
    ap.add_argument("--asks", default="100000", help="sizes at which every question is asked")
    ap.add_argument("--vectors", type=Path, help="an .npz of passage vectors to read and add to (CachedEmbedder)")
    ap.add_argument("--keep", action="store_true", help="grow and measure the library an earlier run built in --out")
    ap.add_argument("--serve-again", action="store_true",
                    help="only measure serve's memory again on --source and the library an earlier run left in --out")
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if a.serve_again:
        if not a.source:
            ap.error("--serve-again needs --source, the 7-minute library the earlier run was made from")
        serve_again(a.out.resolve(), a.source.resolve())
        return
    sizes = [int(s) for s in a.sizes.split(",")]
    run(a.out.resolve(), sizes, a.source, a.blocks, {int(s) for s in a.asks.split(",") if s}, a.keep, say=lambda m: print(m, flush=True),
        construction=a.construction, kept_vectors=a.vectors)


if __name__ == "__main__":
    main()
