"""Timing and memory of an ingest, shared by the main eval run and the long-archive experiment."""

from __future__ import annotations

import resource
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

Progress = Callable[[str], None]  # a progress line sink


def memory_snapshot() -> dict:
    """Peak RSS of this process so far (getrusage) and its current RSS (psutil), in MiB."""
    import psutil  # the eval extra

    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"peak_rss_mb": round(peak_kib / 1024, 1),
            "rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1)}


def timed_ingest(lib, embedder, paths: Sequence[Path], progress: Progress) -> dict:
    """Ingest ``paths`` and return per-file results, stage timings and realtime factors."""
    from pipeline.ingest import ingest

    def on_file(r) -> None:
        progress(f"  {r.status:8} {r.path.name} {r.message}")

    start = time.perf_counter()
    report = ingest(lib, embedder, paths, on_file=on_file)
    wall = time.perf_counter() - start
    files = [{"file": r.path.name, "path": str(r.path), "status": r.status, "message": r.message,
              "sha256": r.sha256, "duration": r.duration} for r in report.results]
    audio = sum(f["duration"] for f in files if f["status"] == "ingested")
    timings = {stage: round(s, 3) for stage, s in report.timings.items()}
    return {"files": files, "counts": dict(Counter(f["status"] for f in files)), "wall": round(wall, 3),
            "audio_seconds": round(audio, 3), "timings": timings,
            "rtf": audio / wall if wall and audio else None,
            "stage_rtf": {stage: audio / s if s and audio else None for stage, s in report.timings.items()}}
