"""Write an eval run's report: report.json (every number), report.md (tables, definitions) and PNG plots.

``headline(report)`` gives the few numbers that summarise a run; the CLI prints the same rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from earmark_eval.diarization import count_summary
from earmark_eval.diarization import markdown as _md_diarization
from earmark_eval.plots import write_plots


RETRIEVAL_DEFS = """\
Over the answerable questions, with the top 10 hits of `search` in each mode. A hit *matches* when it is in
a gold span's file and its [start, end] overlaps the gold span widened by 2 s on each side.

- **hit@k**: share of questions with a matching hit among the first k.
- **MRR**: mean of 1 / rank of the first matching hit (0 when none of the 10 matches).
- **nDCG@10**: binary nDCG; each gold span is credited once, to the earliest hit matching it;
  IDCG is min(10, number of gold spans) ones."""

ANSWER_DEFS = """\
- **accuracy**: share of questions answered correctly. Answerable: `found` is true and the answer contains
  one of `answer_any` (and all of `answer_all`) after folding case, accents and punctuation. Unanswerable:
  `found` is false and there is no citation. A question whose ask failed counts as wrong.
- **abstention on unanswerable**: share of unanswerable questions answered with `found` false.
- **false abstention**: share of answerable questions answered with `found` false.
- **citation validity**: citations in a known recording with 0 <= start < end <= duration + 0.5 s, over all citations.
- **citation support**: citations overlapping a gold span (widened 2 s), over the answerable questions' citations.
- **fully supported**: share of answerable questions with at least one citation whose citations are all supported.
- **timestamp error**: |cited start - gold start| for each supported citation (nearest gold span), seconds.
- **95% interval**: Wilson score interval of a share over this many questions: a change that stays inside it
  may be chance (a small model's answers shift with any change to what it reads)."""

TRANSCRIPTION_DEFS = """\
Hypothesis: the text of the transcript's indexed segments (flagged segments left out, as search leaves them
out). Both texts go through Whisper's normaliser for the recording's language. **WER** = word edits /
reference words; for zh, ja (unspaced) the units are characters. **CER** = character edits / reference
characters. Pooled rows sum edits and reference units over files (a long file weighs more). The baseline is
openai-whisper's own `transcribe` on the same files with the same model."""

SPEED_DEFS = """\
**Realtime factor (RTF)** = seconds of audio / wall seconds (higher is faster). Ingest covers hash, decode,
voice activity + transcription, chunk + embed and store; the Whisper model is loaded before timing. The
baseline is openai-whisper's `model.transcribe(path, fp16=False, word_timestamps=True,
condition_on_previous_text=False)` (greedy, its own defaults otherwise) with the same model, threads and files,
decode included. **Ratio** = earmark ingest RTF / baseline RTF (above 1: earmark is faster). Latency is wall
time per call after one warm-up call (for ask, the warm-up loads the LLM). Peak RSS is
`getrusage(RUSAGE_SELF).ru_maxrss` so far in the run (monotone); RSS is psutil's current value."""

ARCHIVE_DEFS = """\
Stitched archives (`earmark_eval.stitch.build_archive`, seed 0): the folder's clips repeated and shuffled,
separated by 2–40 s gaps of silence, white or pink noise, each ingested alone into its own library.
**Timestamp error**: for each known phrase (manifest), its first three words (else its first word) are looked
up, after folding, in the indexed words' timestamps within ±30 s of the true start; error = |found start -
true start| (the true start is the voice onset of the first word). **Words in gaps**: indexed words (words of
segments with no flag) whose midpoint lies in a gap, per minute of gap; "all words" counts flagged segments too.
**Peak RSS**: the peak resident memory (getrusage) of the process that ingested the archive, a process of
its own per archive, with Whisper, the voice encoder and the embedder loaded."""


# ---------------------------------------------------------------- formatting

def fmt(value, digits: int = 3) -> str:
    """A number for a table: None as an en dash, floats to ``digits`` decimals."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(header: list[str], rows: list[list], digits: int = 3) -> str:
    """A Markdown table; cells are formatted with ``fmt`` to ``digits`` decimals."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c, digits) if not isinstance(c, str) else c.replace("|", "\\|") for c in row)
              + " |" for row in rows]
    return "\n".join(lines)


def _main_archive(report: dict) -> dict | None:
    done = [a for a in report["archives"] if "drift" in a]
    return max(done, key=lambda a: a["minutes"]) if done else None


def headline(report: dict) -> list[tuple[str, str]]:
    """(metric, value) rows that summarise a run."""
    rows = []
    for mode, r in report["retrieval"].items():
        rows.append((f"retrieval ({mode}) hit@1 / hit@5 / MRR / nDCG@10",
                     " / ".join(fmt(r[k]) for k in ("hit@1", "hit@5", "mrr", "ndcg@10"))))
    a = report["answers"]
    rows += [("answer accuracy (all / answerable / unanswerable)",
              " / ".join(fmt(a[k]) for k in ("accuracy", "accuracy_answerable", "accuracy_unanswerable"))),
             ("abstention on unanswerable", fmt(a["abstention_rate"])),
             ("95% interval: answer accuracy (answerable) / abstention",
              " / ".join(_interval(a, k) for k in ("accuracy_answerable", "abstention_rate"))),
             ("citation validity / support / fully supported",
              " / ".join(fmt(a[k]) for k in ("citation_validity", "citation_support", "fully_supported"))),
             ("cited start vs gold start, mean / p50 (s)",
              f"{fmt(a['timestamp_error_mean'], 2)} / {fmt(a['timestamp_error_p50'], 2)}")]
    pooled = report["transcription"]["pooled"]
    if pooled:
        en = pooled.get("en", {})
        rows.append(("WER en (pooled) / CER all languages",
                     f"{fmt(en.get('wer'))} / {fmt(pooled.get('all', {}).get('cer'))}"))
    s = report["speed"]
    rows.append(("ingest realtime factor (x realtime)", fmt(s["ingest"]["rtf"], 1)))
    if s.get("ingest_parallel"):
        rows.append((f"folder ingest RTF, default (a worker per core) / --jobs {s['ingest_parallel']['jobs']}",
                     f"{fmt(s['ingest']['rtf'], 1)} / {fmt(s['ingest_parallel']['rtf'], 1)}"))
    if s["baseline"]:
        rows.append(("baseline openai-whisper RTF / ratio earmark:baseline",
                     f"{fmt(s['baseline']['rtf'], 1)} / {fmt(s['rtf_ratio'], 2)}"))
    lat = s["latency"]
    for mode, l in lat["search"].items():
        rows.append((f"search ({mode}) latency p50 / p95 (ms)", f"{fmt(_ms(l['p50']), 0)} / {fmt(_ms(l['p95']), 0)}"))
    rows.append(("ask latency p50 / p95 (s)", f"{fmt(lat['ask']['p50'], 2)} / {fmt(lat['ask']['p95'], 2)}"))
    rows.append(("peak RSS (MiB)", fmt(max(m["peak_rss_mb"] for m in report["memory"].values()), 0)))
    pool = (report.get("diarization") or {}).get("pooled")
    if pool:
        rows.append(("speaker diarization DER pooled, no collar / ±0.25 s collar",
                     f"{fmt(pool['der'])} / {fmt(pool['der_collar'])}"))
    right = count_summary(report.get("diarization"))
    if right:
        rows.append(("recordings given their true number of speakers", f"{right[0]} / {right[1]}"))
    arch = _main_archive(report)
    if arch:
        d = arch["drift"]
        rows.append((f"{arch['minutes']:g}-min archive: timestamp error first / last 10 min (s)",
                     f"{fmt(d['mean_first_10min'], 2)} / {fmt(d['mean_last_10min'], 2)}"))
        rows.append((f"{arch['minutes']:g}-min archive: indexed words per minute of gap",
                     fmt(arch["gaps"]["all"]["per_minute"], 2)))
    done = [a for a in report["archives"] if "drift" in a]
    if done:
        names = ", ".join(f"{a['minutes']:g}" for a in done)
        rows.append((f"archives of {names} min: ingest RTF",
                     " / ".join(fmt(a["speed"]["rtf"], 1) if not a["reused"] else "–" for a in done)))
        rows.append((f"archives of {names} min: ingest peak RSS (MiB)",
                     " / ".join(fmt(a.get("peak_rss_mb"), 0) for a in done)))
    return rows


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


# ---------------------------------------------------------------- Markdown

def _md_title(r: dict) -> str:
    c = r["config"]
    commit = (c["git_commit"] or "unknown")[:12] + (" (uncommitted changes)" if c["git_dirty"] else "")
    minutes = sum(f["duration"] for f in r["ingest"]["files"]) / 60
    return (f"# earmark eval: {r['set']}\n\n{c['date']} · commit {commit} · {r['n_questions']} questions over "
            f"{r['n_files']} recordings ({minutes:.1f} min) in `{r['audio_dir']}` · run took "
            f"{r['wall_seconds'] / 60:.1f} min")


def _decoding(models: dict) -> str:
    """How Whisper decoded: one beam for all speech, or greedy for English and a beam for the rest."""
    if models.get("beam_size"):
        return f"beam {models['beam_size']}"
    foreign = models.get("foreign_beam_size") or 1
    return "greedy" if foreign == 1 else f"greedy for English, beam {foreign} for other languages"


def _md_setup(r: dict) -> str:
    c, ing = r["config"], r["ingest"]
    m = c["models"]
    how = {"fresh": "Every file was ingested from scratch into the run's own library; ingest speed is from that ingest.",
           "extended": "The given library held none of the files; ingest speed is from ingesting them into it.",
           "reused": "The given library already held files, so their ingest was skipped (**reused**); ingest speed "
                     "below was measured by ingesting the same files into a fresh temporary library."}[ing["mode"]]
    counts = ", ".join(f"{n} {s}" for s, n in sorted(ing["counts"].items()))
    versions = ", ".join(f"{k} {v}" for k, v in c["versions"].items() if v)
    failed = [f for f in ing["files"] if f["status"] == "failed"]
    lines = [f"## Setup\n\n- Library `{ing['library']}`: {counts}. {how}",
             f"- Models: Whisper `{m['whisper']}` ({m['whisper_backend']}, {_decoding(m)}), "
             f"search embedder `{m['embedder']}`, relevance and support judged by `{m.get('support_model', m['embedder'])}`, LLM `{m['llm_model']}` via {m['llm_backend']}; search k={c['search_k']}, "
             f"ask: top {c['answer_k']} of `{c['ask_search_mode']}` search, {c['threads']} threads on {c['cpus']} CPUs.",
             f"- Versions: {versions}; Python {c['python']}, {c['platform']}; memory allocator "
             f"{c.get('allocator', 'not recorded')}.",
             f"- Load average (1, 5, 15 min) at start {c.get('load_average_start') or 'not recorded'}, at end "
             f"{c.get('load_average_end') or 'not recorded'}: other work on the machine slows every timing here."]
    lines += [f"- **Failed:** {f['file']}: {f['message']}" for f in failed]
    return "\n".join(lines)


def _md_retrieval(r: dict) -> str:
    modes = r["retrieval"]
    keys = ["hit@1", "hit@3", "hit@5", "hit@10", "mrr", "ndcg@10"]
    overall = table(["mode", "n", *keys], [[mode, m["n"], *(m[k] for k in keys)] for mode, m in modes.items()])
    kinds = sorted({k for m in modes.values() for k in m["by_kind"]})
    rows = [[kind, mode, m["by_kind"][kind]["n"], *(m["by_kind"][kind][k] for k in ("hit@1", "hit@5", "rr", "ndcg@10"))]
            for kind in kinds for mode, m in modes.items() if kind in m["by_kind"]]
    by_kind = table(["kind", "mode", "n", "hit@1", "hit@5", "MRR", "nDCG@10"], rows)
    return f"## Retrieval\n\n{RETRIEVAL_DEFS}\n\n{overall}\n\nBy question kind:\n\n{by_kind}"


def _interval(answers: dict, key: str) -> str:
    """A metric's 95% interval as "low–high" (a run from before intervals were kept has none)."""
    ci = (answers.get("interval95") or {}).get(key)
    return f"{fmt(ci[0], 2)}–{fmt(ci[1], 2)}" if ci else "–"


def _md_answers(r: dict) -> str:
    a = r["answers"]
    rows = [["accuracy (all)", a["accuracy"]], ["accuracy (answerable)", a["accuracy_answerable"]],
            ["accuracy (answerable), 95% interval", _interval(a, "accuracy_answerable")],
            ["accuracy (unanswerable)", a["accuracy_unanswerable"]], ["abstention on unanswerable", a["abstention_rate"]],
            ["abstention, 95% interval", _interval(a, "abstention_rate")],
            ["false abstention (answerable)", a["false_abstention_rate"]], ["citation validity", a["citation_validity"]],
            ["citation support", a["citation_support"]], ["fully supported", a["fully_supported"]],
            ["timestamp error mean (s)", a["timestamp_error_mean"]], ["timestamp error p50 (s)", a["timestamp_error_p50"]],
            ["timestamp error p95 (s)", a["timestamp_error_p95"]], ["asks that failed", a["missing"]]]
    kinds = table(["kind", "n", "accuracy"], [[k, v["n"], v["correct"]] for k, v in a["by_kind"].items()])
    return (f"## Answers\n\n{a['n']} questions ({a['n_answerable']} answerable, {a['n_unanswerable']} unanswerable), "
            f"one `ask` each.\n\n{ANSWER_DEFS}\n\n{table(['metric', 'value'], rows)}\n\nBy question kind:\n\n{kinds}")


def _md_transcription(r: dict, plots: dict) -> str:
    t = r["transcription"]
    base = t["baseline_pooled"] or {}
    pooled = table(["language", "files", "ref units", "WER", "CER", "baseline WER", "baseline CER"],
                   [[k, v["files"], v["ref_words"], v["wer"], v["cer"], (base.get(k) or {}).get("wer"),
                     (base.get(k) or {}).get("cer")] for k, v in sorted(t["pooled"].items(), key=lambda kv: (kv[0] == "all", kv[0]))])
    files = table(["file", "lang", "WER", "CER", "baseline WER", "flagged segs"],
                  [[f["file"] + (" †" if f["eval_reference"] else ""), f["lang"], f["wer"], f["cer"],
                    f.get("baseline_wer"), f["flagged_segments"]] for f in t["files"]])
    plot = f"\n\n![WER per language]({plots['wer']})" if "wer" in plots else ""
    return (f"## Transcription\n\n{TRANSCRIPTION_DEFS} \"all\" adds up different units (characters for zh, ja): "
            f"read it beside the per-language rows.\n\n{pooled}{plot}\n\nPer file († reference is eval's own "
            f"single-stream text, see `eval/references/README.md`; some are approximate):\n\n{files}")


def _md_speed(r: dict, plots: dict) -> str:
    s, ing = r["speed"], r["speed"]["ingest"]
    note = {"fresh": "Ingest timed on the run's own fresh library.",
            "extended": "Ingest timed on the given library (it held none of the files).",
            "reused": "**Ingest was reused** from the given library; the timings below come from ingesting the same "
                      "files into a fresh temporary library."}[r["ingest"]["mode"]]
    stages = [[stage, secs, secs / ing["wall"] if ing["wall"] else None, ing["stage_rtf"].get(stage)]
              for stage, secs in ing["timings"].items()]
    stages.append(["**total (wall)**", ing["wall"], 1.0, ing["rtf"]])
    lines = [f"## Speed and memory\n\n{SPEED_DEFS}\n\n{note} {ing['counts'].get('ingested', 0)} files, "
             f"{ing['audio_seconds']:.1f} s of audio.\n", table(["stage", "seconds", "share", "RTF"], stages, digits=2)]
    if s["baseline"]:
        b = s["baseline"]
        m = r["config"]["models"]
        lines.append(f"\nearmark transcribes with the `{m['whisper_backend']}` backend. Baseline openai-whisper "
                     f"`transcribe` ({b['torch_threads']} torch threads): {b['wall']:.1f} s for "
                     f"{b['audio_seconds']:.1f} s of audio, RTF {fmt(b['rtf'], 1)}. "
                     f"**earmark ingest RTF / baseline RTF = {fmt(s['rtf_ratio'], 2)}**.")
    else:
        lines.append("\nBaseline not run (`--no-baseline`).")
    if s.get("ingest_parallel"):
        p = s["ingest_parallel"]
        lines.append(f"\nThe ingest above uses the default for a folder: one worker process per core, the "
                     f"parent embedding and storing. The same folder ingested into a fresh library with "
                     f"`--jobs {p['jobs']}` took {p['wall']:.1f} s, RTF {fmt(p['rtf'], 1)}, against "
                     f"{ing['wall']:.1f} s, RTF {fmt(ing['rtf'], 1)} by default.")
    lat = s["latency"]
    rows = [[f"search ({m})", l["n"], _ms(l["p50"]), _ms(l["p95"]), _ms(l["mean"]), _ms(l["max"])]
            for m, l in lat["search"].items()]
    rows.append(["ask", lat["ask"]["n"], *(_ms(lat["ask"][k]) for k in ("p50", "p95", "mean", "max"))])
    lines += [f"\nQuery latency in ms (ask's warm-up call, which loads the LLM, took {lat['ask_cold_start']:.1f} s):\n",
              table(["call", "n", "p50", "p95", "mean", "max"], rows, digits=1)]
    if "latency" in plots:
        lines.append(f"\n![latency]({plots['latency']})")
    mem = [[k.replace("_", " "), v["peak_rss_mb"], v["rss_mb"]] for k, v in r["memory"].items()]
    lines += ["\nMemory (MiB):\n", table(["checkpoint", "peak RSS so far", "RSS now"], mem, digits=0)]
    return "\n".join(lines)


def _md_archives(r: dict, plots: dict) -> str:
    if not r["archives"]:
        return "## Long archives\n\nNot run (`--long-minutes 0`)."
    rows, skipped = [], []
    for a in r["archives"]:
        if "drift" not in a:
            skipped.append(f"- {a['minutes']:g} min: skipped: {a['skipped']}")
            continue
        d, g = a["drift"], a["gaps"]["all"]
        rows.append([f"{a['minutes']:g} min", a["clips"], f"{d['found']}/{d['n']}", d["mean"], d["mean_first_10min"],
                     d["mean_last_10min"], d["p95"], d["max"], g["gap_minutes"], g["words"], g["per_minute"],
                     a["gaps_all_words"]["all"]["per_minute"], a["speed"]["rtf"] if not a["reused"] else None,
                     a.get("peak_rss_mb")])
    header = ["archive", "clips", "phrases found", "mean err (s)", "first 10 min", "last 10 min", "p95", "max",
              "gap min", "words in gaps", "per gap min", "per gap min (all words)", "ingest RTF", "peak RSS (MiB)"]
    parts = [f"## Long archives: timestamp drift and words in gaps\n\n{ARCHIVE_DEFS}\n", table(header, rows)]
    parts += skipped
    kinds = [[f"{a['minutes']:g} min", kind, v["gaps"], v["gap_minutes"], v["words"], v["per_minute"]]
             for a in r["archives"] if "gaps" in a for kind, v in a["gaps"].items() if kind != "all"]
    if kinds:
        parts += ["\nIndexed words in gaps by gap kind:\n",
                  table(["archive", "gap kind", "gaps", "minutes", "words", "per minute"], kinds)]
    if any(a.get("reused") for a in r["archives"]):
        parts.append("\n(An archive already in its library was reused: its ingest RTF is not measured.)")
    if "drift" in plots:
        parts.append(f"\n![timestamp error by position]({plots['drift']})")
    if "memory" in plots:
        parts.append(f"\n![memory against file length]({plots['memory']})")
    return "\n".join(parts)


def _short(text: str | None, n: int = 70) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[:n - 1] + "…"


def _md_questions(r: dict) -> str:
    modes = list(r["retrieval"])
    rows = []
    for q in r["questions"]:
        a = q["answer"] or {}
        cite = a.get("citations") or []
        where = f"{cite[0]['file']} @ {cite[0]['start']:.1f}" if cite else ""
        rows.append([q["id"], q["kind"] or "", *[fmt(q["rank"][m]) for m in modes], q["found"], q["correct"],
                     _short(q["error"] or a.get("answer")), _short(where, 50)])
    head = ["id", "kind", *[f"rank ({m})" for m in modes], "found", "correct", "answer", "first citation"]
    return f"## Per question\n\nRank: of the first matching hit among 10 (– none).\n\n{table(head, rows)}"


def _md_errors(r: dict) -> str:
    errs = [f"- {kind} {qid}: {msg}" for kind, by_id in r["errors"].items() for qid, msg in by_id.items()]
    return "## Errors\n\n" + "\n".join(errs) if errs else ""


def write_markdown(report: dict, plots: dict) -> str:
    """The whole report.md: headline table first, then one section per measurement."""
    head = table(["metric", "value"], [list(row) for row in headline(report)])
    sections = [_md_title(report), f"## Headline\n\n{head}", _md_setup(report), _md_retrieval(report),
                _md_answers(report), _md_transcription(report, plots), _md_speed(report, plots),
                _md_archives(report, plots), _md_diarization(report.get("diarization")), _md_questions(report),
                _md_errors(report)]
    return "\n\n".join(s for s in sections if s) + "\n"


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def write_report(report: dict, out: Path) -> dict[str, Path]:
    """Write report.json, the plots and report.md into ``out``; returns their paths by name."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "md": out / "report.md"}
    paths["json"].write_text(json.dumps(report, indent=1, ensure_ascii=False, default=_json_default) + "\n",
                             encoding="utf-8")
    plots = write_plots(report, out)
    paths["md"].write_text(write_markdown(report, plots), encoding="utf-8")
    return {**paths, **{name: out / f for name, f in plots.items()}}
