"""Load: 32 concurrent clients for 60 s against `earmark serve` while it ingests (issue 22, part 4).

A small asyncio + httpx client (locust would add a web UI and gevent for what is one bounded loop).
Each client picks a route at random, by weight, until the time is up: search, ask (streamed NDJSON),
transcript, recordings, an audio range and a clip. An ask refused with 503 is "shed": the client
waits its Retry-After (as a well-behaved client does) and goes on. Counted: server errors (any 5xx
but a shed ask), dropped connections (a transport error), asks that never ended, latency per route.
Meanwhile an upload of recordings the library does not hold yet is being ingested.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import httpx

from earmark_eval.metrics import percentile
from earmark_eval.reliability.part import Context, Goal, Part, command
from earmark_eval.reliability.server import Server, ingest

ROUTES = {"search": 40, "transcript": 12, "recordings": 10, "audio": 15, "clip": 10, "ask": 13}
QUERIES = ["ask what you can do for your country", "the meeting about the remote control", "Chicago",
           "what the caller said about the weather", "sonnet", "the fox", "apostle of the middle classes",
           "what did they decide about the buttons", "Kapitän", "telephone"]
QUESTIONS = ["What did Kennedy ask Americans to do?", "Where does Sheila live?", "What colour should the remote be?",
             "What is Mr. Quilter the apostle of?"]
QUICK_FILES = ("jfk-inaugural-1961-excerpt.flac", "librispeech-1272-128104-0000.wav", "pyannote-sample-phonecall-2spk.wav")
INGEST_DURING = ("picovoice-leopard-test-de.wav", "librispeech-2412-153948-0000.flac")


def run(ctx: Context) -> Part:
    clients, seconds = (8, 15) if ctx.quick else (32, 60)
    library = ctx.out / "library"
    files = [ctx.audio / f for f in QUICK_FILES] if ctx.quick else sorted(p for p in ctx.audio.iterdir()
                                                                          if p.suffix in (".wav", ".flac", ".mp3"))
    ingest(ctx.earmark, library, files, ctx.out / "ingest.log")
    fresh = [_new_bytes(ctx.audio / f, ctx.out / "fresh") for f in INGEST_DURING]
    with Server(ctx.earmark, library, ctx.out / "serve.log") as server:
        recordings = httpx.get(server.url + "/api/recordings").json()["recordings"]
        ctx.progress(f"load: {clients} clients for {seconds} s on {len(recordings)} recordings, ingesting {len(fresh)}")
        _warm(server.url)
        rss = [server.rss_mib()]
        jobs = [httpx.post(server.url + "/api/ingest", files={"file": (f.name, f.read_bytes(), "audio/wav")},
                           timeout=60).json()["job"] for f in fresh]
        stats = asyncio.run(_load(server, recordings, clients, seconds, random.Random(ctx.seed), rss))
        ingested = _await_jobs(server.url, jobs)
        stopped_in = server.stop()
    return _part(ctx, clients, seconds, stats, ingested, max(rss), stopped_in)


def _new_bytes(src: Path, folder: Path) -> Path:
    """The recording re-encoded to WAV: new bytes, so the server really transcribes it."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / (src.stem + "-copy.wav")
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), "-ac", "1", "-ar", "16000", str(out)],
                   check=True)
    return out


def _warm(url: str) -> None:
    """One search and one ask first, so model loading is not counted as latency."""
    httpx.get(url + "/api/search", params={"q": "country"}, timeout=120)
    httpx.post(url + "/api/ask", json={"question": QUESTIONS[0]}, timeout=300).read()


async def _load(server: Server, recordings: list[dict], clients: int, seconds: float, rng: random.Random,
                rss: list[float]) -> dict:
    stats = {"latency": defaultdict(list), "status": defaultdict(lambda: defaultdict(int)), "dropped": [],
             "shed": 0, "asks": {"answered": 0, "error_event": 0, "unfinished": 0}}
    end = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=httpx.Timeout(300)) as http:
        async def watch():
            while time.monotonic() < end:
                rss.append(server.rss_mib())
                await asyncio.sleep(2)

        await asyncio.gather(watch(), *[_client(http, recordings, end, random.Random(rng.random()), stats)
                                        for _ in range(clients)])
    return stats


async def _client(http: httpx.AsyncClient, recordings: list[dict], end: float, rng: random.Random, stats: dict) -> None:
    names, weights = list(ROUTES), list(ROUTES.values())
    while time.monotonic() < end:
        route = rng.choices(names, weights)[0]
        rec = rng.choice(recordings)
        t = time.monotonic()
        try:
            status, retry = await _request(http, route, rec, rng, stats)
        except httpx.TransportError as e:
            stats["dropped"].append(f"{route}: {type(e).__name__}: {e}"[:200])
            continue
        stats["status"][route][status] += 1
        if status == 503 and route == "ask":
            stats["shed"] += 1
            await asyncio.sleep(min(retry, max(0.0, end - time.monotonic())))
            continue
        stats["latency"][route].append(time.monotonic() - t)


async def _request(http: httpx.AsyncClient, route: str, rec: dict, rng: random.Random, stats: dict) -> tuple[int, float]:
    """One request of the route; (status, Retry-After seconds)."""
    rid = rec["id"]
    if route == "search":
        r = await http.get("/api/search", params={"q": rng.choice(QUERIES), "mode": rng.choice(["hybrid", "dense", "lexical"])})
    elif route == "transcript":
        r = await http.get(f"/api/recordings/{rid}/transcript")
    elif route == "recordings":
        r = await http.get("/api/recordings")
    elif route == "audio":
        a = rng.randrange(0, 20000)
        r = await http.get(f"/api/recordings/{rid}/audio", headers={"Range": f"bytes={a}-{a + 65535}"})
    elif route == "clip":
        start = rng.uniform(0, max(0.0, (rec["duration"] or 1) - 2))
        r = await http.get(f"/api/recordings/{rid}/clip", params={"start": round(start, 2), "end": round(start + 2, 2)})
    else:
        return await _ask(http, rng.choice(QUESTIONS), stats)
    return r.status_code, 0.0


async def _ask(http: httpx.AsyncClient, question: str, stats: dict) -> tuple[int, float]:
    async with http.stream("POST", "/api/ask", json={"question": question}) as r:
        if r.status_code != 200:
            await r.aread()
            return r.status_code, float(r.headers.get("retry-after", 1))
        last = None
        async for line in r.aiter_lines():
            if line.strip():
                last = json.loads(line)
    kind = {"answer": "answered", "error": "error_event"}.get((last or {}).get("event"), "unfinished")
    stats["asks"][kind] += 1
    return 200, 0.0


def _await_jobs(url: str, jobs: list[str], seconds: float = 600) -> list[dict]:
    deadline, done = time.monotonic() + seconds, []
    for job in jobs:
        while (j := httpx.get(f"{url}/api/ingest/{job}").json())["status"] in ("queued", "running"):
            if time.monotonic() > deadline:
                break
            time.sleep(1)
        done.append(j)
    return done


def _part(ctx: Context, clients: int, seconds: float, stats: dict, ingested: list[dict], rss: float,
          stopped_in: float) -> Part:
    errors = {route: {s: n for s, n in codes.items() if s >= 500 and not (route == "ask" and s == 503)}
              for route, codes in stats["status"].items()}
    n_errors = sum(sum(c.values()) for c in errors.values())
    rows = {route: {"requests": sum(stats["status"][route].values()),
                    "p50_ms": _ms(lat, 50), "p95_ms": _ms(lat, 95), "p99_ms": _ms(lat, 99),
                    "statuses": dict(stats["status"][route])}
            for route, lat in sorted(stats["latency"].items())}
    ok_jobs = sum(j["status"] == "done" for j in ingested)
    asks = stats["asks"]
    goals = [Goal("server errors (5xx; a shed ask's 503 aside)", str(n_errors), "0", n_errors == 0),
             Goal("dropped connections", str(len(stats["dropped"])), "0", not stats["dropped"]),
             Goal("asks answered / error event / never ended / shed (503 + Retry-After)",
                  f"{asks['answered']} / {asks['error_event']} / {asks['unfinished']} / {stats['shed']}",
                  "none never ended", asks["unfinished"] == 0),
             Goal("uploads ingested during the load", f"{ok_jobs}/{len(ingested)}", f"{len(ingested)}/{len(ingested)}",
                  ok_jobs == len(ingested)),
             Goal("serve peak RSS under load", f"{rss:.0f} MiB", "reported", True),
             Goal("SIGTERM to exit", f"{stopped_in:.1f} s", "< 60 s", stopped_in < 60)]
    table = ["| route | requests | p50 ms | p95 ms | p99 ms | statuses |", "|---|---|---|---|---|---|"]
    table += [f"| {r} | {v['requests']} | {v['p50_ms']} | {v['p95_ms']} | {v['p99_ms']} | {v['statuses']} |"
              for r, v in rows.items()]
    md = (f"{clients} clients for {seconds:.0f} s, route weights {ROUTES}, while {len(ingested)} uploads were "
          "ingested. The ask queue holds 4 asks (running or waiting, `EARMARK_ASK_QUEUE`); one more gets 503 "
          "with a Retry-After estimated from recent asks, and every ask ends within 120 s of its request "
          "(`EARMARK_ASK_TIMEOUT`) with an answer or an error event.\n\n" + "\n".join(table))
    if stats["dropped"]:
        md += "\n\nDropped:\n" + "\n".join(f"- {d}" for d in stats["dropped"][:20])
    return Part("load", "Load: concurrent clients while ingesting", command("load"), goals,
                {"routes": rows, "errors": errors, "dropped": stats["dropped"], "asks": asks, "shed": stats["shed"],
                 "jobs": ingested, "peak_rss_mib": round(rss), "sigterm_seconds": round(stopped_in, 2)}, md)


def _ms(values: list[float], q: float) -> float | None:
    p = percentile(values, q) if values else None
    return None if p is None else round(p * 1000, 1)
