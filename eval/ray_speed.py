"""Ingest throughput on a Ray cluster (issue 23, item 4), measured on this machine with real nodes.

    .venv/bin/python -m earmark_eval.ray_speed --out eval/results/ray [--audio ../shared/data/real]

Ingests the real recordings three times into fresh libraries, each in this process as the driver:
locally (the default worker processes), on a Ray cluster of one node (`ray start --head --num-cpus 1`),
then of two (a second `ray start --address ... --num-cpus 1`), and measures wall time and realtime
factor, the driver's own work per file (hashing, cutting passages and storing them, which one writer
does for the whole cluster; locally it also embeds them, on a cluster the nodes do), and a Ray task's
round trip with no work in it. From those, the report predicts what N
nodes would ingest: N times one node's rate, until the driver's store rate is the limit.
Writes report.json and report.md into --out. On 2 cores, two nodes of one CPU share the machine
with the driver, so the two-node figure is a floor, not what two machines would do.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from earmark_eval.references import REAL_DIR
from earmark_eval.reliability.server import free_port


def _noop() -> float:
    return time.time()


def _ingest(root: Path, files: list[Path], ray: str | None) -> dict:
    from pipeline.embed import load
    from pipeline.ingest import IngestOptions, ingest
    from pipeline.store import Library

    lib = Library(root)
    embedder = load()
    t = time.perf_counter()
    report = ingest(lib, embedder, files, IngestOptions(ray=ray))
    wall = time.perf_counter() - t
    audio = sum(r.duration for r in report.results if r.status == "ingested")
    lib.close()
    return {"wall_s": round(wall, 1), "audio_s": round(audio, 1), "rtf": round(audio / wall, 2) if wall else None,
            "files": len(report.results), "failed": [r.message for r in report.failed],
            "driver_store_s": round(sum(report.timings.get(k, 0.0) for k in ("chunk+embed", "store", "hash")), 2),
            "timings": {k: round(v, 2) for k, v in report.timings.items()}}


def _overhead(address: str, n: int = 30) -> dict:
    from pipeline.cluster import RayPool

    pool = RayPool(address)
    pool.submit(_noop).result()  # a worker starts
    ms = []
    for _ in range(n):
        t = time.perf_counter()
        pool.submit(_noop).result()
        ms.append((time.perf_counter() - t) * 1000)
    pool.shutdown()
    return {"noop_task_ms_median": round(statistics.median(ms), 1), "noop_task_ms_max": round(max(ms), 1)}


def run(out: Path, audio: Path) -> dict:
    from pipeline.ingest import discover

    from earmark_eval.ray_nodes import head_args, node, wait_nodes

    out.mkdir(parents=True, exist_ok=True)
    files = discover([audio])
    work = Path(tempfile.mkdtemp(prefix="earmark-ray-"))
    report: dict = {"files": len(files), "machine": f"{os.cpu_count()} cores"}
    report["local"] = _ingest(work / "local", files, None)
    port = free_port()
    address = f"127.0.0.1:{port}"
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    with node(head_args(port, temp), out / "head.log"):
        wait_nodes(address, 1)
        report["overhead"] = _overhead(address)
        report["one_node"] = _ingest(work / "one", files, address)
        with node(["--address", address, "--node-ip-address", "127.0.0.1"], out / "node2.log"):
            wait_nodes(address, 2)
            report["two_nodes"] = _ingest(work / "two", files, address)
    shutil.rmtree(temp, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    one = report["one_node"]
    per_file_driver = one["driver_store_s"] / max(1, one["files"])
    store_rate = one["audio_s"] / one["driver_store_s"] if one["driver_store_s"] else None  # audio s per driver s
    report["prediction"] = {
        "one_node_rtf": one["rtf"], "driver_seconds_per_file": round(per_file_driver, 2),
        "driver_limit_rtf": round(store_rate, 1) if store_rate else None,
        "nodes_until_driver_limits": int(store_rate / one["rtf"]) if store_rate and one["rtf"] else None}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    p = report["prediction"]
    lines = ["# Ingest on Ray", "", "Command: `python -m earmark_eval.ray_speed`; "
             f"{report['files']} real recordings ({one['audio_s'] / 60:.1f} min of audio), {report['machine']}.", "",
             "| run | wall s | realtime factor | driver's work s (hash, passages, store; locally also embedding) |",
             "|---|---|---|---|"]
    for key, label in (("local", "local (worker processes)"), ("one_node", "Ray, 1 node × 1 CPU"),
                       ("two_nodes", "Ray, 2 nodes × 1 CPU")):
        r = report[key]
        lines.append(f"| {label} | {r['wall_s']} | {r['rtf']}x | {r['driver_store_s']} |")
    lines += ["", f"A Ray task with no work: {report['overhead']['noop_task_ms_median']} ms round trip (median).",
              f"On a cluster the nodes embed and the driver stores, at {p['driver_limit_rtf']}x realtime, so a cluster "
              f"of up to about {p['nodes_until_driver_limits']} one-CPU nodes like this one is limited by its nodes, "
              "not by the one writer; past that, by the writer.", ""]
    (out / "report.md").write_text("\n".join(lines))
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "ray")
    ap.add_argument("--audio", type=Path, default=REAL_DIR)
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(json.dumps(run(a.out.resolve(), a.audio), indent=1))


if __name__ == "__main__":
    main()
