"""Voice activity: find speech regions so silence is never decoded and each region gets its own language.

silero-vad ships its ONNX model inside its wheel, so nothing is downloaded. Regions are returned as
sample offsets on the original timeline: every later timestamp is derived from sample counts, which is
what keeps long files free of drift.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .audio import SAMPLE_RATE, Block

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Region:
    start: int  # first sample
    end: int  # one past the last sample

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE


@functools.lru_cache(maxsize=1)
def _model():
    from silero_vad import load_silero_vad

    return load_silero_vad(onnx=True)


# Whisper reads 30 s at a time: speech running on longer than this is split at its quietest short
# pause (silero's own rule), so every region fits one Whisper window with room for the padding.
MAX_REGION_SECONDS = 29.0


def speech_regions(samples: np.ndarray, threshold: float = 0.4, pad_ms: int = 300,
                   min_silence_ms: int = 500, max_seconds: float = float("inf")) -> list[Region]:
    """Speech regions of 16 kHz mono float32 audio, padded a little so no word is clipped."""
    import torch
    from silero_vad import get_speech_timestamps

    stamps = get_speech_timestamps(
        torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)), _model(),
        sampling_rate=SAMPLE_RATE, threshold=threshold, speech_pad_ms=pad_ms,
        min_silence_duration_ms=min_silence_ms, min_speech_duration_ms=200,
        max_speech_duration_s=max_seconds)
    return [Region(int(s["start"]), int(s["end"])) for s in stamps]


def pieces(blocks: Iterable[Block]) -> Iterator[tuple[Block, list[Region]]]:
    """Blocks of a stream re-cut inside silence, each with its speech regions (relative to its start).

    Speech still running at the end of a block is carried into the next one, so no region is ever
    cut in two; a carry is at most one region (≤ MAX_REGION_SECONDS), so memory stays flat."""
    carry: Block | None = None
    for block in blocks:
        buf = block if carry is None else _join(carry, block)
        regions = speech_regions(buf.samples, max_seconds=MAX_REGION_SECONDS)
        # Speech that reaches the block's end (within the padding) may go on in the next block.
        cut = regions.pop().start if regions and regions[-1].end >= len(buf.samples) - _TAIL else len(buf.samples)
        if cut > 0:
            yield _slice(buf, 0, cut), regions
        carry = _slice(buf, cut, len(buf.samples)) if cut < len(buf.samples) else None
    if carry is not None:
        yield carry, speech_regions(carry.samples, max_seconds=MAX_REGION_SECONDS)


_TAIL = SAMPLE_RATE  # 1 s: more than the padding plus the shortest silence that ends a region


def _join(a: Block, b: Block) -> Block:
    channels = None if a.channels is None else np.concatenate([a.channels, b.channels], axis=1)
    return Block(a.start, np.concatenate([a.samples, b.samples]), channels)


def _slice(block: Block, lo: int, hi: int) -> Block:
    channels = None if block.channels is None else block.channels[:, lo:hi]
    return Block(block.start + lo, block.samples[lo:hi], channels)


def pack_windows(regions: list[Region], languages: list[str], max_seconds: float) -> list[tuple[Region, str]]:
    """Join neighbouring regions of the same language into windows of at most max_seconds.

    A region longer than the limit stays whole (speech_regions' max_seconds keeps them shorter); a
    change of language always starts a new window, so every window is decoded in its own language.
    """
    limit = int(max_seconds * SAMPLE_RATE)
    windows: list[tuple[Region, str]] = []
    for r, lang in zip(regions, languages):
        if windows and windows[-1][1] == lang and r.end - windows[-1][0].start <= limit:
            windows[-1] = (Region(windows[-1][0].start, r.end), lang)
        else:
            windows.append((r, lang))
    return windows
