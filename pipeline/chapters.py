"""Chapters of a recording: where its talk turns to something else.

A boundary goes where the sentences just before a point and just after it are least alike compared
with their surroundings: Hearst's TextTiling depth score (Computational Linguistics 23(1), 1997), taken
on sentence embeddings instead of word counts, as Solbiati et al. (2021) do for meeting transcripts,
with Hearst's own cut-off (depth above mean - std/2). A silence as long as one that ends a passage
(ChunkOptions.max_gap) ends a chapter too: nobody talks through it. A chapter shorter than
`SummaryOptions.min_chapter` seconds is not made; the strongest boundaries are kept first.

Written here: nltk's TextTilingTokenizer counts words in paragraph-formatted prose, which a
transcript is not, and no maintained library segments embedded sentences; this is forty lines of numpy.
"""

from __future__ import annotations

import numpy as np

from .config import SummaryOptions
from .sentences import Span


def split(spans: list[Span], vectors: np.ndarray, options: SummaryOptions = SummaryOptions()) -> list[list[Span]]:
    """The sentences of a recording (in time order, with one unit vector each) cut into chapters."""
    if not spans:
        return []
    starts = sorted(_boundaries(spans, vectors, options))
    return [spans[a:b] for a, b in zip([0] + starts, starts + [len(spans)])]


def depths(vectors: np.ndarray, window: int) -> np.ndarray:
    """TextTiling depth score of each gap between two sentences (len(vectors) - 1 of them): how far the
    similarity of the ``window`` sentences either side of it dips below the peaks left and right of it."""
    n = len(vectors)
    sims = np.array([_cos(vectors[max(0, i + 1 - window):i + 1].mean(0), vectors[i + 1:i + 1 + window].mean(0))
                     for i in range(n - 1)])
    out = np.zeros(len(sims))
    for i, s in enumerate(sims):
        left = right = s
        for j in range(i - 1, -1, -1):  # climb while the similarity rises
            if sims[j] < left:
                break
            left = sims[j]
        for j in range(i + 1, len(sims)):
            if sims[j] < right:
                break
            right = sims[j]
        out[i] = (left - s) + (right - s)
    return out


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) or 1.0))


def _boundaries(spans: list[Span], vectors: np.ndarray, options: SummaryOptions) -> list[int]:
    """Indices of the sentences that start a chapter (the first one excepted)."""
    if len(spans) < 2:
        return []
    depth = depths(vectors, options.window)
    pauses = np.array([b.start - a.end for a, b in zip(spans, spans[1:])])
    cutoff = depth.mean() - depth.std() / 2  # Hearst's "liberal" cut-off
    silent = pauses >= options.pause
    candidates = [i for i in range(len(depth)) if silent[i] or (depth[i] > cutoff and depth[i] > 0)]
    # Silences first (longest first), then the deepest dips, each kept only if the two chapters it
    # makes are both long enough.
    candidates.sort(key=lambda i: (not silent[i], -(pauses[i] if silent[i] else depth[i])))
    chosen: list[int] = []  # i: a chapter starts at sentence i + 1
    for i in candidates:
        before = max((c for c in chosen if c < i), default=-1) + 1
        after = min((c for c in chosen if c > i), default=len(spans) - 1)
        if spans[i].end - spans[before].start >= options.min_chapter and \
                spans[after].end - spans[i + 1].start >= options.min_chapter:
            chosen.append(i)
    return [i + 1 for i in chosen]
