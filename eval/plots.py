"""The PNG plots of an eval report: latency, timestamp error by position, WER per language, and
memory against file length."""

from __future__ import annotations

from pathlib import Path

import numpy as np

PLOTS = {"latency": "latency.png", "drift": "drift.png", "wer": "wer.png", "memory": "memory.png"}


def _pyplot():
    try:
        import matplotlib
    except ImportError as e:
        raise RuntimeError("plots need matplotlib: pip install 'earmark[eval]'") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_latency(report: dict, path: Path) -> None:
    """Box plots with every call as a dot: search per mode (ms) and ask (s), side by side."""
    plt = _pyplot()
    secs = report["speed"]["latency_seconds"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4), gridspec_kw={"width_ratios": [max(1, len(secs["search"])), 1]})
    groups = [("search", left, list(secs["search"].items()), 1000, "ms"), ("ask", right, [("ask", secs["ask"])], 1, "s")]
    rng = np.random.default_rng(0)
    for title, ax, data, scale, unit in groups:
        values = [np.asarray(v) * scale for _, v in data]
        ax.boxplot(values, showfliers=False)
        ax.set_xticks(range(1, len(data) + 1), [name for name, _ in data])
        for i, v in enumerate(values, start=1):
            ax.scatter(i + rng.uniform(-0.12, 0.12, len(v)), v, s=10, alpha=0.5, color="tab:blue")
        ax.set_title(f"{title} latency per call ({unit})")
        ax.set_ylabel(unit)
        ax.set_ylim(bottom=0)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bin_means(rows: list[dict], width: float, duration: float) -> tuple[list[float], list[float]]:
    """Mean error per ``width``-minute bin of position, as step-plot edges and values."""
    edges = list(np.arange(0, duration / 60 + 1e-9, width)) + [duration / 60]
    edges = sorted(set(edges))
    means = []
    for lo, hi in zip(edges, edges[1:]):
        errs = [r["error"] for r in rows if r["error"] is not None and lo <= r["true_start"] / 60 < hi]
        means.append(float(np.mean(errs)) if errs else np.nan)
    return edges, means


def plot_drift(report: dict, path: Path) -> None:
    """Per archive, the timestamp error of each known phrase against its position, with the mean per
    bin of position as a step line; phrases not found are marked along the top."""
    plt = _pyplot()
    done = sorted((a for a in report["archives"] if "drift" in a), key=lambda a: a["minutes"])
    errors = [r["error"] for a in done for r in a["drift"]["rows"] if r["error"] is not None]
    top = max(errors + [1.0]) * 1.15
    fig, axes = plt.subplots(len(done), 1, figsize=(9, 2.6 * len(done) + 0.6), squeeze=False)
    for ax, arch in zip(axes[:, 0], done):
        rows, minutes = arch["drift"]["rows"], arch["minutes"]
        found = [r for r in rows if r["error"] is not None]
        missed = [r for r in rows if r["error"] is None]
        ax.scatter([r["true_start"] / 60 for r in found], [r["error"] for r in found], s=16, alpha=0.6,
                   label=f"phrase ({len(found)}/{len(rows)} found)")
        width = 10 if minutes >= 30 else 2
        edges, means = _bin_means(rows, width, arch["duration"])
        ax.stairs(means, edges, color="tab:red", linewidth=1.5, label=f"mean per {width} min")
        if missed:
            ax.scatter([r["true_start"] / 60 for r in missed], [top] * len(missed), marker="x", color="black",
                       s=25, label="not found")
        ax.set_xlim(0, arch["duration"] / 60)
        ax.set_ylim(0, top * 1.08)
        ax.set_title(f"{minutes:g}-min archive", fontsize=10)
        ax.set_ylabel("error (s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    axes[-1, 0].set_xlabel("true position of the phrase in the archive (minutes)")
    fig.suptitle("Timestamp error of known phrases: |found start - true start|", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_wer(report: dict, path: Path) -> None:
    """Pooled WER per language: earmark beside the openai-whisper baseline."""
    plt = _pyplot()
    t = report["transcription"]
    langs = [k for k in sorted(t["pooled"]) if k != "all" and t["pooled"][k]["wer"] is not None]
    base = t["baseline_pooled"] or {}
    x = np.arange(len(langs))
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(langs) + 2), 3.8))
    width = 0.38 if base else 0.6
    bars = ax.bar(x - (width / 2 if base else 0), [t["pooled"][k]["wer"] for k in langs], width, label="earmark")
    ax.bar_label(bars, fmt="%.2f", fontsize=7)
    if base:
        bars = ax.bar(x + width / 2, [(base.get(k) or {}).get("wer") or 0 for k in langs], width,
                      label="openai-whisper transcribe (baseline)")
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(x, [f"{k}\n({t['pooled'][k]['files']} files)" for k in langs], fontsize=8)
    ax.set_ylabel("WER (characters for zh, ja)")
    ax.set_title("Word error rate per language (pooled)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_memory(report: dict, path: Path) -> None:
    """Peak RSS of each archive's ingest (its own process) against the archive's length."""
    plt = _pyplot()
    done = sorted((a["minutes"], a["peak_rss_mb"] / 1024) for a in report["archives"] if a.get("peak_rss_mb"))
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot([m for m, _ in done], [g for _, g in done], marker="o")
    ax.axhline(2.5, color="grey", linestyle="--", linewidth=1, label="2.5 GB goal")
    ax.set_xlabel("file length (minutes)")
    ax.set_ylabel("peak RSS of ingest (GiB)")
    ax.set_ylim(0, max(3.0, max(g for _, g in done) * 1.15))
    ax.legend(loc="lower right")
    ax.set_title("Memory against file length")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(report: dict, out: Path) -> dict[str, str]:
    """Draw the plots the run has data for; returns {name: file name}."""
    drawn = {}
    if report["speed"]["latency_seconds"]["ask"] or any(report["speed"]["latency_seconds"]["search"].values()):
        plot_latency(report, out / PLOTS["latency"])
        drawn["latency"] = PLOTS["latency"]
    if any("drift" in a for a in report["archives"]):
        plot_drift(report, out / PLOTS["drift"])
        drawn["drift"] = PLOTS["drift"]
    if any(a.get("peak_rss_mb") for a in report["archives"]):
        plot_memory(report, out / PLOTS["memory"])
        drawn["memory"] = PLOTS["memory"]
    if any(k != "all" for k in report["transcription"]["pooled"]):
        plot_wer(report, out / PLOTS["wer"])
        drawn["wer"] = PLOTS["wer"]
    return drawn


