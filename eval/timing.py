"""Timing and memory of an ingest, shared by the main eval run and the long-archive experiment.

`ingest_in_child` ingests in a process of its own, so its peak RSS is that ingest's alone (a process's
peak only ever grows): that is how eval plots memory against file length.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline import allocator

Progress = Callable[[str], None]  # a progress line sink


def memory_snapshot() -> dict:
    """Peak RSS of this process so far and its current RSS (psutil), in MiB.

    The peak is the kernel's high-water mark of this process image (/proc/self/status VmHWM) where
    there is one: getrusage's ru_maxrss carries over, through exec, the size of the parent at fork,
    so a child started by a 3 GB eval process would report 3 GB whatever it used."""
    import psutil  # the eval extra

    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    try:
        status = Path("/proc/self/status").read_text()
        peak_kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
    except (OSError, StopIteration, ValueError):
        pass
    return {"peak_rss_mb": round(peak_kib / 1024, 1),
            "rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1)}


def timed_ingest(lib, embedder, paths: Sequence[Path], progress: Progress, jobs: int | None = None) -> dict:
    """Ingest ``paths`` (with ``jobs`` worker processes, else the default) and return per-file
    results, stage timings and realtime factors."""
    from pipeline.ingest import IngestOptions, ingest

    def on_file(r) -> None:
        progress(f"  {r.status:8} {r.path.name} {r.message}")

    options = IngestOptions() if jobs is None else IngestOptions(jobs=jobs)
    start = time.perf_counter()
    report = ingest(lib, embedder, paths, options, on_file=on_file)
    wall = time.perf_counter() - start
    files = [{"file": r.path.name, "path": str(r.path), "status": r.status, "message": r.message,
              "sha256": r.sha256, "duration": r.duration} for r in report.results]
    audio = sum(f["duration"] for f in files if f["status"] == "ingested")
    timings = {stage: round(s, 3) for stage, s in report.timings.items()}
    return {"files": files, "counts": dict(Counter(f["status"] for f in files)), "wall": round(wall, 3),
            "audio_seconds": round(audio, 3), "timings": timings,
            "rtf": audio / wall if wall and audio else None,
            "stage_rtf": {stage: audio / s if s and audio else None for stage, s in report.timings.items()}}


def ingest_in_child(library_dir: Path, paths: Sequence[Path], embed_model: str, progress: Progress) -> dict:
    """timed_ingest run in a fresh process, plus that process's peak RSS ("peak_rss_mb")."""
    cmd = [sys.executable, "-m", "earmark_eval.timing", str(library_dir), embed_model, *map(str, paths)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=allocator.environ())  # as `earmark` runs
    for line in proc.stderr.splitlines():
        if line.startswith("  "):
            progress(line)
    if proc.returncode != 0:
        raise RuntimeError(f"ingest child failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _child(argv: Sequence[str]) -> None:
    from pipeline.config import EmbedOptions
    from pipeline.embed import load as load_embedder
    from pipeline.store import Library

    library_dir, embed_model, *paths = argv
    embedder = load_embedder(EmbedOptions(model=embed_model))
    lib = Library(Path(library_dir), embedder.name)
    run = timed_ingest(lib, embedder, [Path(p) for p in paths], lambda line: print(line, file=sys.stderr))
    lib.close()
    print(json.dumps({**run, **memory_snapshot()}))


if __name__ == "__main__":
    _child(sys.argv[1:])
