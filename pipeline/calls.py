"""A recorded call with one speaker per channel: tell one, and find its turns channel by channel.

Split from diarize.py, which uses it for two-channel files: the channels of such a call are
uncorrelated and each carries speech, so SPEAKER_1 is where the left channel speaks and SPEAKER_2
where the right does; no voice model is needed. `CallStats` gathers the evidence piece by piece.
"""

from __future__ import annotations

import numpy as np

from .audio import SAMPLE_RATE
from .speakers import Turn
from .vad import Region, speech_regions

FRAME = 160  # samples per energy frame (10 ms)
MAX_CORRELATION = 0.3  # channels correlating less than this carry different signals


def speech_for_turns(samples: np.ndarray, lead: int = 0) -> list[Region]:
    """Speech regions for diarization (tighter than for transcription). Those ending in the first
    `lead` samples were the piece before's, and none is let start before the piece does."""
    return [Region(max(r.start, lead), r.end) for r in speech_regions(samples, pad_ms=100, min_silence_ms=300)
            if r.end > lead]


def turn(start: int, end: int, speaker: str) -> Turn:
    """A turn between two samples of the file, in seconds to the millisecond."""
    return Turn(round(start / SAMPLE_RATE, 3), round(end / SAMPLE_RATE, 3), speaker)


class CallStats:
    """What tells a call with one speaker per channel, gathered piece by piece: the channels' running
    means and co-moments (for their correlation over the file) and whether each has carried speech."""

    def __init__(self, max_correlation: float = MAX_CORRELATION):
        self.max_correlation = max_correlation
        self.n = 0
        self.mean = np.zeros(2)
        self.comoment = np.zeros((2, 2))  # sums of products of deviations from the running mean
        self.speech = [False, False]

    def add_moments(self, channels: np.ndarray, block: int = 60 * SAMPLE_RATE) -> None:
        """Fold a piece into the moments, a minute at a time (Chan et al.'s pairwise update, float64)."""
        for i in range(0, channels.shape[1], block):
            x = channels[:, i:i + block].astype(np.float64)
            m, mean = x.shape[1], x.mean(axis=1)
            deviations, delta, n = x - mean[:, None], mean - self.mean, self.n + m
            self.comoment += deviations @ deviations.T + np.outer(delta, delta) * self.n * m / n
            self.mean += delta * m / n
            self.n = n

    def add_speech(self, channels: np.ndarray) -> None:
        """Note which channels have speech; one known to have some is not searched again."""
        self.speech = [has or bool(speech_regions(c)) for has, c in zip(self.speech, channels)]

    def uncorrelated(self) -> bool:
        """Both channels carry signal, and they correlate less than the limit."""
        variance = np.diag(self.comoment)
        if self.n == 0 or (np.sqrt(variance / self.n) < 1e-4).any():
            return False
        return abs(self.comoment[0, 1] / np.sqrt(variance.prod())) < self.max_correlation

    def is_split(self) -> bool:
        """Uncorrelated channels, each with speech."""
        return self.uncorrelated() and all(self.speech)


def is_channel_split(channels: np.ndarray, max_correlation: float = MAX_CORRELATION) -> bool:
    """True for two channels that carry different signals (low correlation), each with speech."""
    if channels.shape[0] != 2:
        return False
    call = CallStats(max_correlation)
    call.add_moments(channels)
    if call.uncorrelated():  # else no need to look for speech
        call.add_speech(channels)
    return call.is_split()


def channel_turns(channels: np.ndarray, crosstalk_db: float = 20.0, offset: int = 0) -> list[Turn]:
    """SPEAKER_1 where the left channel has speech, SPEAKER_2 where the right has; speech heard on a
    channel more than `crosstalk_db` below the other is the other's voice leaking in, and dropped.
    `offset` is the first sample of `channels` on the file's timeline."""
    energy = _frame_energy_db(channels)
    turns = []
    for i, (samples, name) in enumerate(zip(channels, ("SPEAKER_1", "SPEAKER_2"))):
        own = energy[i] >= energy[1 - i] - crosstalk_db
        for r in speech_for_turns(samples):
            keep = own[r.start // FRAME: max(r.start // FRAME + 1, r.end // FRAME)]
            if keep.mean() >= 0.5:
                turns.append(turn(offset + r.start, offset + r.end, name))
    return sorted(turns, key=lambda t: t.start)


def _frame_energy_db(channels: np.ndarray) -> np.ndarray:
    n = channels.shape[1] // FRAME
    frames = channels[:, :n * FRAME].reshape(channels.shape[0], n, FRAME)
    return 10 * np.log10((frames.astype(np.float64) ** 2).mean(axis=2) + 1e-10)
