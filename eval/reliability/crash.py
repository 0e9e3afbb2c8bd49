"""Crash safety (issue 22 parts 1 and 2): kill -9 during ingest, then resume; two writers at once.

A clean ingest of the folder builds library A, traced (EARMARK_TRACE, pipeline/trace.py) so each
stage's duration per file is known. Each trial ingests the same folder into a fresh library, waits for
the trace's `begin` of its target stage (round-robin over trace.STAGES, so every stage is hit; the n-th
occurrence and a fraction of that stage's clean duration are drawn from the seed), SIGKILLs the whole
process group, runs the same ingest again to completion and compares the library with A: catalog rows,
transcript segments, FTS rows, Chroma ids and documents, duplicates, orphans, audit entries,
`verify --audit`, and `search`/`ask` answers. Stages that last milliseconds (the catalog, FTS and audit
writes, the Chroma delete-then-upsert) are held open at their inner points for PAUSE seconds with
EARMARK_TRACE_PAUSE, so the kill lands inside them rather than after. Everything runs through the
`earmark` command; the library is read with sqlite3 and chromadb in a subprocess (snapshot.py-like
script below), never by importing pipeline.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from earmark_eval.reliability.part import Context, Goal, Part, command
from pipeline import speakers
from earmark_eval.reliability.server import Server, child_env

STAGES = ("decode+vad", "transcribe", "diarize", "embed", "store-chroma", "store-fts", "catalog", "audit")
QUICK_FILES = ("librispeech-1272-128104-0000.wav", "jfk-inaugural-1961-excerpt.flac",
               "picovoice-leopard-diarization-3spk.wav")
QUERIES = ("ask not what your country can do", "apostle of the middle classes", "crocodile",
           "fasten your seat belts", "the wizard behind the curtain")
QUESTIONS = ("What did Kennedy ask his fellow Americans to do?", "Who is the apostle of the middle classes?")
FAST = 0.3  # a stage shorter than this (seconds, in the clean run) is held open at its points
PAUSE = 0.6  # how long each point of a held stage lasts
SIDECARS = (".rttm", ".stm")

SNAPSHOT = r"""
import json, sqlite3, sys
from pathlib import Path
root = Path(sys.argv[1])
db = sqlite3.connect(root / "catalog.sqlite")
recs = {r[0]: {"file": r[1], "status": r[2], "duration": r[3], "passages": r[4]} for r in
        db.execute("SELECT sha256, file_name, status, duration, passages FROM recordings")}
fts = sorted(db.execute("SELECT passage_id, file_hash, text FROM passages").fetchall())
try:  # the full-text index agrees with the passages table it indexes (rank 1: checked against it)
    db.execute("INSERT INTO passages_fts (passages_fts, rank) VALUES ('integrity-check', 1)")
except sqlite3.DatabaseError as e:
    fts.append(["full-text index out of step with its passages: " + str(e), "", ""])
import chromadb
from chromadb.config import Settings
client = chromadb.PersistentClient(path=str(root / "chroma"), settings=Settings(anonymized_telemetry=False))
try:
    got = client.get_collection("passages").get(include=["documents", "metadatas"])
    vectors = sorted(zip(got["ids"], [m["file_hash"] for m in got["metadatas"]], got["documents"]))
except Exception as e:  # no collection: nothing was indexed
    vectors = []
transcripts = {}
for f in sorted((root / "transcripts").glob("*.json")):
    t = json.loads(f.read_text())
    transcripts[f.name] = [[s["text"], s["start"], s["end"], s.get("speaker")] for s in t["segments"]]
audit = {}
log = root / "audit.jsonl"
for line in (log.read_text().splitlines() if log.exists() else []):
    e = json.loads(line)
    if e.get("event") == "ingest":
        audit[e["sha256"]] = audit.get(e["sha256"], 0) + 1
tmp = sorted(str(p.relative_to(root)) for p in root.rglob(".*.tmp"))
print(json.dumps({"recordings": recs, "fts": fts, "vectors": vectors, "transcripts": transcripts,
                  "audit_ingests": audit, "tmp": tmp}))
"""


def _overrides(trace: Path | None = None, pause: str | None = None) -> dict:
    """What a child's environment changes (None: removed): offline, and the stage trace only if asked."""
    o: dict = {k: None for k in os.environ if k.startswith("EARMARK_TRACE") or k == "EARMARK_LIBRARY"}
    o.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    if trace is not None:
        o["EARMARK_TRACE"] = str(trace)
    if pause:
        o["EARMARK_TRACE_PAUSE"] = pause
    return o


def _env(trace: Path | None = None, pause: str | None = None) -> dict:
    return child_env(_overrides(trace, pause))


def _earmark(ctx: Context, lib: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*ctx.earmark, "--library", str(lib), *args], capture_output=True, text=True,
                          env=_env(), timeout=timeout)


def _folder(ctx: Context) -> Path:
    """The recordings to ingest (with their speaker-turn sidecars), linked into one folder."""
    names = QUICK_FILES if ctx.quick else sorted(
        p.name for p in ctx.audio.iterdir() if p.suffix.lower() in (".wav", ".flac", ".mp3"))
    folder = ctx.out / "audio"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in names:
        for src in [ctx.audio / name] + [(ctx.audio / name).with_suffix(s) for s in SIDECARS]:
            if src.exists():
                (folder / src.name).symlink_to(src.resolve())
    return folder


def read_trace(path: Path) -> list[tuple[float, int, str, str, str]]:
    """The trace lines: (time, pid, stage, begin|end|point, file)."""
    out = []
    for line in (path.read_text().splitlines() if path.exists() else []):
        parts = line.split(" ", 4)
        if len(parts) == 5:
            out.append((float(parts[0]), int(parts[1]), parts[2], parts[3], parts[4]))
    return out


def open_stages(lines) -> list[str]:
    """Stages begun and not ended, per process (what a kill at the end of this trace landed in)."""
    stack: dict[int, list[tuple[str, str]]] = {}
    for _, pid, stage, edge, name in lines:
        if edge == "begin":
            stack.setdefault(pid, []).append((stage, name))
        elif edge == "end" and stack.get(pid) and stack[pid][-1][0] == stage:
            stack[pid].pop()
    return sorted({f"{s} ({n})" for frames in stack.values() for s, n in frames})


def durations(lines) -> dict[str, list[float]]:
    """Seconds of each occurrence of each stage, in order of beginning."""
    begun: dict[tuple[int, str], float] = {}
    out: dict[str, list[float]] = {}
    for t, pid, stage, edge, _ in lines:
        if edge == "begin":
            begun[(pid, stage)] = t
        elif edge == "end" and (pid, stage) in begun:
            out.setdefault(stage, []).append(t - begun.pop((pid, stage)))
    return out


def snapshot(lib: Path) -> dict:
    """What the library holds, read with sqlite3 and chromadb in a subprocess."""
    r = subprocess.run([sys.executable, "-c", SNAPSHOT, str(lib)], capture_output=True, text=True,
                       env=_env(), timeout=300)
    if r.returncode:
        raise RuntimeError(f"snapshot of {lib} failed: {r.stderr.strip().splitlines()[-1:]}")
    return json.loads(r.stdout)


def answers(ctx: Context, lib: Path, quick: bool, ask: bool = True) -> dict:
    """verify --audit, search and ask results (the parts of them that must not depend on the run).
    Searches and questions go to one `earmark serve` on the library, not one command each: a cold
    command loads the models again, minutes a trial on shared cores. The answering model's own English
    renderings of foreign speech are off (EARMARK_LLM_TRANSLATE=0, Whisper's translation is read): each
    fresh library would pay for them again, a minute a question, and they are no part of what a crash
    can change. Quick: two queries and one question; ask=False leaves the (slow, LLM) questions out."""
    out: dict = {}
    v = _earmark(ctx, lib, "verify", "--audit", "--json")
    out["verify"] = json.loads(v.stdout)["ok"] if v.stdout.strip().startswith("{") else v.stderr.strip()[-300:]
    with Server(ctx.earmark, lib, lib.parent / "answers-serve.log", env=_overrides() | {"EARMARK_LLM_TRANSLATE": "0"}) as server:
        for q in QUERIES[:2] if quick else QUERIES:
            r = httpx.get(server.url + "/api/search", params={"q": q}, timeout=300)
            out[f"search {q}"] = ([[h["file"], h["start"], h["end"], h["text"], round(h["score"], 5)]
                                   for h in r.json()["hits"]] if r.status_code == 200 else r.text[-300:])
        for q in (QUESTIONS[:1] if quick else QUESTIONS) if ask else ():
            r = httpx.post(server.url + "/api/ask", json={"question": q}, timeout=600)
            last = [json.loads(x) for x in r.text.splitlines() if x.strip()][-1:] or [{"event": "none"}]
            a = last[0] if last[0]["event"] == "answer" else {"error": str(last[0])[-300:]}
            out[f"ask {q}"] = {k: a.get(k) for k in ("answer", "found", "error")} | {
                "citations": [{k: c[k] for k in ("n", "file", "start", "end", "text")} for c in a.get("citations", [])]}
    return out


def problems(clean: dict, got: dict) -> dict[str, list]:
    """What differs from the clean library, and what is wrong in itself, by kind."""
    indexed = {h for h, r in got["recordings"].items() if r["status"] == "indexed"}
    fts_ids = [p[0] for p in got["fts"]]
    vec_ids = [v[0] for v in got["vectors"]]
    rows = set(got["recordings"])
    out = {
        "lost": sorted(clean["recordings"][h]["file"] for h in clean["recordings"] if h not in indexed),
        "duplicated": sorted({i for i in fts_ids if fts_ids.count(i) > 1} | {i for i in vec_ids if vec_ids.count(i) > 1}),
        "orphans": sorted({f"fts {p[0]}" for p in got["fts"] if p[1] not in indexed}
                          | {f"vector {v[0]}" for v in got["vectors"] if v[1] not in indexed}
                          | {f"transcript {n}" for n in got["transcripts"] if n.split(".")[0] not in rows}
                          | {f"row {h[:12]} without transcript" for h in rows if f"{h}.json" not in got["transcripts"]}),
        "leftover tmp": got["tmp"],
        "audit ingests": sorted(f"{h[:12]}: {n}" for h, n in got["audit_ingests"].items() if n != 1)
                         + sorted(f"{h[:12]}: 0" for h in indexed if h not in got["audit_ingests"]),
    }
    for key in ("recordings", "fts", "vectors", "transcripts"):
        if got[key] != clean[key]:
            out[f"{key} differ"] = _diff(clean[key], got[key])
    return {k: v for k, v in out.items() if v}


def _diff(a, b) -> list:
    """A short account of how b differs from a (first few items)."""
    if isinstance(a, dict):
        keys = sorted(set(a) | set(b))
        return [f"{k}: {a.get(k)!r:.120} -> {b.get(k)!r:.120}" for k in keys if a.get(k) != b.get(k)][:4]
    sa, sb = {json.dumps(x) for x in a}, {json.dumps(x) for x in b}
    return [f"missing {x:.120}" for x in sorted(sa - sb)][:3] + [f"extra {x:.120}" for x in sorted(sb - sa)][:3]


def _answer_diffs(clean: dict, got: dict) -> list[str]:
    return [f"{k}: {json.dumps(got.get(k))[:160]} (clean: {json.dumps(v)[:160]})"
            for k, v in clean.items() if got.get(k) != v]


def ingest_traced(ctx: Context, lib: Path, folder: Path, trace: Path, pause: str | None = None,
                  kill: tuple[str, int, float] | None = None, timeout: float = 1800) -> dict:
    """Run `earmark ingest folder` in a session of its own; with kill=(stage, n, delay), SIGKILL its
    process group `delay` seconds after the n-th (0-based) `begin` of that stage."""
    t0 = time.monotonic()
    p = subprocess.Popen([*ctx.earmark, "--library", str(lib), "ingest", str(folder)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=_env(trace, pause), start_new_session=True)
    killed = False
    if kill is not None:
        stage, n, delay = kill
        while p.poll() is None and time.monotonic() - t0 < timeout:
            begins = [x for x in read_trace(trace) if x[2] == stage and x[3] == "begin"]
            if len(begins) > n:
                time.sleep(delay)
                os.killpg(p.pid, signal.SIGKILL)
                killed = True
                break
            time.sleep(0.005)
    out, err = p.communicate(timeout=timeout)
    if killed:
        time.sleep(0.2)  # the killed group's workers are gone before the next run opens the library
    return {"rc": p.returncode, "killed": killed, "seconds": round(time.monotonic() - t0, 2),
            "stdout": out, "stderr": err}


def trial(ctx: Context, i: int, folder: Path, clean: dict, clean_trace, ask: bool = True) -> dict:
    """One kill -9 trial on a fresh library: kill at the chosen stage, resume, compare with clean."""
    rng = random.Random(ctx.seed * 1000 + i)
    stage = STAGES[i % len(STAGES)]
    times = durations(clean_trace).get(stage, [])
    n = rng.randrange(len(times)) if times else 0
    typical = times[n] if times else 0.0
    fraction = rng.random()
    held = typical < FAST
    delay = fraction * (PAUSE if held else typical)
    base = ctx.out / f"trial-{i:02d}"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    lib, trace = base / "library", base / "trace.log"
    first = ingest_traced(ctx, lib, folder, trace, f"{stage}:{PAUSE}" if held else None, (stage, n, delay))
    landed = open_stages(read_trace(trace)) if first["killed"] else []
    second = ingest_traced(ctx, lib, folder, base / "resume.log")
    row = {"trial": i, "seed": ctx.seed * 1000 + i, "target": f"{stage} #{n + 1}", "delay": round(delay, 3),
           "held": held, "killed": first["killed"], "landed": landed, "seconds": first["seconds"],
           "resume_rc": second["rc"], "resume_seconds": second["seconds"]}
    wrong = {}
    if not first["killed"]:
        wrong["not killed"] = [f"ingest ended (rc {first['rc']}) before {stage} #{n + 1} began"]
    if second["rc"] != 0 or "Traceback" in second["stderr"]:
        wrong["resume failed"] = [second["stderr"].strip()[-400:]]
    got = snapshot(lib)
    wrong.update(problems(clean["library"], got))
    got_answers = answers(ctx, lib, ctx.quick, ask)
    row["verify"] = got_answers["verify"] is True
    diffs = _answer_diffs({k: v for k, v in clean["answers"].items() if k in got_answers}, got_answers)
    if diffs:
        wrong["answers differ"] = diffs
    row.update(problems=wrong, lost=len(wrong.get("lost", [])), duplicated=len(wrong.get("duplicated", [])),
               orphans=len(wrong.get("orphans", [])), passed=not wrong,
               hit=any(s.startswith(stage + " ") for s in landed))
    return row


def two_writers(ctx: Context, files: list[Path], clean: dict) -> dict:
    """Two `earmark ingest` of overlapping folders started together on one library."""
    base = ctx.out / "two-writers"
    shutil.rmtree(base, ignore_errors=True)
    halves = [base / "first", base / "second"]
    cut = max(1, len(files) // 2)
    for folder, part in zip(halves, (files[:cut + 1], files[cut:])):
        folder.mkdir(parents=True)
        for f in part:  # with its speaker-turns file: without it, the voices are found otherwise
            for g in [f, *filter(None, [speakers.sidecar(f)])]:
                (folder / g.name).symlink_to(g.resolve())
    lib = base / "library"
    procs = [subprocess.Popen([*ctx.earmark, "--library", str(lib), "ingest", str(f)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=_env(), start_new_session=True) for f in halves]
    done = [p.communicate(timeout=1800) for p in procs]
    wrong = {}
    for p, (out, err) in zip(procs, done):
        if p.returncode != 0 or "Traceback" in err or "database is locked" in err:
            wrong.setdefault("ingest failed", []).append(f"rc {p.returncode}: {err.strip()[-300:]}")
    busy = [line for _, err in done for line in err.splitlines() if "is busy" in line]
    got = snapshot(lib)
    missing = {h: r for h, r in clean["library"]["recordings"].items() if r["file"] in {f.name for f in files}}
    ref = {**clean["library"], "recordings": missing}
    wrong.update({k: v for k, v in problems(ref, got).items() if not k.endswith("differ")})
    if got["recordings"] != missing:
        wrong["recordings differ"] = _diff(missing, got["recordings"])
    return {"ok": not wrong, "problems": wrong, "busy_messages": busy,
            "exit_codes": [p.returncode for p in procs]}


def _clean(ctx: Context, folder: Path, ask: bool = True) -> dict:
    lib, trace = ctx.out / "clean" / "library", ctx.out / "clean" / "trace.log"
    shutil.rmtree(lib.parent, ignore_errors=True)
    lib.parent.mkdir(parents=True)
    run = ingest_traced(ctx, lib, folder, trace)
    if run["rc"] != 0:
        raise RuntimeError(f"the clean ingest failed: {run['stderr'].strip()[-500:]}")
    return {"library": snapshot(lib), "answers": answers(ctx, lib, ctx.quick, ask), "trace": read_trace(trace),
            "seconds": run["seconds"]}


def run(ctx: Context) -> Part:
    """The crash part: a clean run, ctx.trials kill -9 trials, the server kill, two writers. Quick mode
    ingests 3 short recordings and, unless --trials says otherwise, runs 3 trials."""
    folder = _folder(ctx)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() not in SIDECARS)
    ctx.progress(f"crash: clean ingest of {len(files)} recordings")
    ask = not ctx.quick  # a question takes the LLM minutes on shared cores: quick mode compares search only
    clean = _clean(ctx, folder, ask)
    rows = []
    for i in range(3 if ctx.quick and ctx.trials == 20 else ctx.trials):
        rows.append(trial(ctx, i, folder, clean, clean["trace"], ask))
        r = rows[-1]
        ctx.progress(f"crash: trial {i}: {r['target']} -> {', '.join(r['landed']) or 'not killed'}: "
                     f"{'ok' if r['passed'] else r['problems']}")
    server = serve_trial(ctx, files, clean)
    ctx.progress(f"crash: serve: {server['observed']}")
    writers = two_writers(ctx, files, clean)
    ctx.progress(f"crash: two writers: {'ok' if writers['ok'] else writers['problems']}")
    return _part(ctx, clean, rows, server, writers)


def serve_trial(ctx: Context, files: list[Path], clean: dict, stage: str = "store-chroma") -> dict:
    """Kill `earmark serve` (the whole group) during an upload's ingest, restart it, look at the library;
    then upload the file again while a CLI ingest writes to the same library (two writers)."""
    base = ctx.out / "serve"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    lib, trace = base / "library", base / "trace.log"
    upload = files[0]
    server = Server(ctx.earmark, lib, base / "serve.log", env=_overrides(trace, f"{stage}:{PAUSE}")).start()
    job = server.upload(upload)["job"]
    t0 = time.monotonic()
    while time.monotonic() - t0 < 600 and not any(x[2] == stage and x[3] == "begin" for x in read_trace(trace)):
        time.sleep(0.005)
    time.sleep(PAUSE / 2)
    landed = open_stages(read_trace(trace))
    server.kill()
    after_kill = snapshot(lib)
    with Server(ctx.earmark, lib, base / "serve.log", env=_overrides()) as server:
        resumed = server.wait_job(job)  # a restarted server ingests the whole upload it had received
        on_restart = snapshot(lib)
        state = {h: r["status"] for h, r in on_restart["recordings"].items()}
        cli = subprocess.Popen([*ctx.earmark, "--library", str(lib), "ingest", str(files[-1])], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=_env(), start_new_session=True)
        again = server.wait_job(server.upload(upload)["job"])
        cli_out, cli_err = cli.communicate(timeout=900)
    final = snapshot(lib)
    ref_recs = {h: r for h, r in clean["library"]["recordings"].items() if r["file"] in (upload.name, files[-1].name)}
    wrong = {k: v for k, v in problems({**clean["library"], "recordings": ref_recs}, final).items()
             if not k.endswith("differ")}
    if final["recordings"] != ref_recs:
        wrong["recordings differ"] = _diff(ref_recs, final["recordings"])
    if resumed["status"] != "done" or [f["status"] for f in resumed.get("files", [])] != ["ingested"]:
        wrong["upload not resumed"] = [f"job {job} on restart: {resumed}"[:300]]
    kept = sorted(str(x.relative_to(lib)) for x in (lib / "uploads").rglob("*") if x.is_file())
    if len(kept) != 1:
        wrong["uploads kept"] = kept  # the original the catalog points at, and no copy of it
    if again["status"] != "done" or cli.returncode != 0 or "Traceback" in cli_err:
        wrong["ingest failed"] = [f"upload again: {again.get('message')}; cli rc {cli.returncode}: {cli_err.strip()[-300:]}"]
    v = _earmark(ctx, lib, "verify", "--audit", "--json")
    if not (v.stdout.strip().startswith("{") and json.loads(v.stdout)["ok"]):
        wrong["verify"] = [v.stdout[-300:] + v.stderr[-300:]]
    observed = (f"killed in {', '.join(landed) or 'no stage'}; after the kill the catalog held "
                f"{ {r['file']: r['status'] for r in after_kill['recordings'].values()} or 'nothing'}; on restart the "
                f"server resumed job {job} ({resumed['status']}) and left it as "
                f"{ {on_restart['recordings'][h]['file']: s for h, s in state.items()} or 'absent'}; uploading it again "
                f"{'was ' + str(again['files'][0]['status']) if again['status'] == 'done' else 'failed: ' + str(again.get('message'))}, "
                f"while a CLI ingest wrote too (rc {cli.returncode})")
    return {"ok": not wrong, "problems": wrong, "landed": landed, "observed": observed, "uploads_kept": kept}


def _part(ctx: Context, clean: dict, rows: list[dict], server: dict, writers: dict) -> Part:
    n = len(rows)
    passed = sum(r["passed"] for r in rows)
    hit = sorted({s.split(" ")[0] for r in rows for s in r["landed"]})
    targets = sorted({r["target"].split(" ")[0] for r in rows if r["hit"]})
    goals = [
        Goal("kill -9 trials passed", f"{passed}/{n}", f"{n}/{n}", passed == n),
        Goal("recordings lost", str(sum(r["lost"] for r in rows)), "0", not any(r["lost"] for r in rows)),
        Goal("duplicated ids", str(sum(r["duplicated"] for r in rows)), "0", not any(r["duplicated"] for r in rows)),
        Goal("orphan rows/vectors/transcripts", str(sum(r["orphans"] for r in rows)), "0",
             not any(r["orphans"] for r in rows)),
        Goal("verify --audit ok", f"{sum(r['verify'] for r in rows)}/{n}", f"{n}/{n}", all(r["verify"] for r in rows)),
        Goal("search and ask equal to the clean run" if not ctx.quick else "search equal to the clean run (quick: no ask)", f"{sum('answers differ' not in r['problems'] for r in rows)}/{n}",
             f"{n}/{n}", all("answers differ" not in r["problems"] for r in rows)),
        Goal("stages killed in (target hit)", ", ".join(targets) or "none",
             ", ".join(STAGES[:min(n, len(STAGES))]), len(targets) == min(n, len(STAGES))),
        Goal("kill serve during an upload ingest", "ok" if server["ok"] else "failed", "ok", server["ok"]),
        Goal("two writers at once", "ok" if writers["ok"] else "failed", "ok", writers["ok"]),
    ]
    lines = [f"Clean ingest: {len(clean['library']['recordings'])} recordings in {clean['seconds']} s. "
             f"Stages any kill landed in: {', '.join(hit)}.", "",
             "| trial | seed | target stage | killed in | delay s | killed after s | result | what differed |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        what = "; ".join(f"{k}: {v}" for k, v in r["problems"].items()).replace("|", "/")[:400]
        lines.append(f"| {r['trial']} | {r['seed']} | {r['target']}{' (held)' if r['held'] else ''} | "
                     f"{', '.join(r['landed']) or '-'} | {r['delay']} | {r['seconds']} | "
                     f"{'pass' if r['passed'] else '**fail**'} | {what or '-'} |")
    lines += ["", f"**Server killed during an upload ingest.** {server['observed']}. "
                  f"Problems: {server['problems'] or 'none'}.", "",
              f"**Two writers.** Exit codes {writers['exit_codes']}; busy messages: "
              f"{writers['busy_messages'] or 'none'}; problems: {writers['problems'] or 'none'}."]
    extra = "" if ctx.trials == 20 else f" --trials {ctx.trials}"
    return Part("crash", "Crash safety: kill -9 during ingest, then resume; two writers",
                command("crash", extra + (" --quick" if ctx.quick else "")), goals,
                {"clean_seconds": clean["seconds"], "trials": rows, "serve": server, "two_writers": writers},
                "\n".join(lines))
