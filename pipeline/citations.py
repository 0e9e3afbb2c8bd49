"""Citations narrowed from a passage to the sentence(s) that carry an answer, and checked first.

A passage runs 20-60 s; a citation points at the sentence that bears the answer out (verify.py says
whether one does), widened only while the answer runs on into the next, and quotes the words spoken.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from . import lexical, verify
from .embed import Embedder
from .records import Citation, Hit, during
from .sentences import Span
from .store import Library

log = logging.getLogger(__name__)


def narrow(library: Library, embedder: Embedder, n: int, hit: Hit, spans: list[Span], question: str,
           answer: str) -> Citation | None:
    """The sentence(s) among those shown that carry the answer, or None if none supports it.

    A sentence supports the answer if it holds the answer's new words, in either rendering, and is
    about the question on its own or, read with its neighbours, close to it (the answer "cotton" to
    "what did he lose that brought him grief?" sits in the sentence after "it was the first great
    sorrow of his life"). A citation quotes the words actually spoken in its span.
    """
    texts = [answer, question] + [s.said for s in spans] + [f"{s.context} {s.said}" for s in spans]
    vecs = embedder.embed(texts)
    k = len(spans)
    sim_answer, sim_question, sim_context = vecs[2:2 + k] @ vecs[0], vecs[2:2 + k] @ vecs[1], vecs[2 + k:] @ vecs[1]
    overlap = np.array([verify.novel_support(question, answer, s.attests) for s in spans])
    about = np.array([verify.question_overlap(question, s.attests, s.foreign) for s in spans])
    # An answer copied from a sentence holds its words in that sentence's order: "ask what you can do
    # for your country" is the second of Kennedy's sentences, though the first has the same words.
    said = lexical.tokens(answer)
    content = max(1, lexical.content_count(said))
    in_order = np.array([lexical.phrase_length(said, lexical.tokens(s.attests)) / content for s in spans])
    for best in np.argsort(-(sim_answer + overlap + about + in_order)):  # the likeliest sentence first
        span = spans[best]
        if not verify.supports(question, answer, span.attests):
            continue
        if not (verify.about_question(question, span.attests, float(sim_question[best]), span.foreign) or
                verify.about_in_context(question, f"{span.context} {span.attests}", float(sim_context[best]),
                                        float(sim_question[best]), span.foreign)):
            continue
        in_time = sorted(spans, key=lambda x: x.start)
        chosen = widen(in_time, in_time.index(span), question, answer)
        # Attested only in the other rendering: cite the time that rendering covers.
        also = span.parallel_span if not verify.supports(question, answer, span.evidence) else None
        return citation(library, n, hit, chosen, also)
    log.info("answer %r not supported by %s @ %.1f-%.1f", answer, hit.file, hit.start, hit.end)
    return None


def citation(library: Library, n: int, hit: Hit, chosen: list[Span],
             also: tuple[float, float] | None = None) -> Citation:
    """A citation of consecutive sentences (and of the time ``also`` covers), quoting the words spoken."""
    start, end = chosen[0].start, chosen[-1].end
    if also:
        start, end = min(start, also[0]), max(end, also[1])
    if hit.translated or also:
        spoken = during(library.transcript(hit.file_hash).segments, start, end)
        start, end = min([start] + [s.start for s in spoken]), max([end] + [s.end for s in spoken])
        text = " ".join(s.text for s in spoken)
    else:
        text = " ".join(s.text for s in chosen)
    return Citation(n=n, file=hit.file, start=start, end=end, text=text, file_hash=hit.file_hash)


def widen(spans: list[Span], best: int, question: str, answer: str,
          said: Callable[[Span], str] = lambda s: s.evidence) -> list[Span]:
    """Add neighbouring sentences while the answer's new words run on into them (in ``said`` of each)."""
    lo = hi = best

    def support(a: int, b: int) -> float:
        return verify.novel_support(question, answer, " ".join(said(s) for s in spans[a:b + 1]))
    while hi + 1 < len(spans) and support(lo, hi + 1) > support(lo, hi) + 0.1:
        hi += 1
    while lo > 0 and support(lo - 1, hi) > support(lo, hi) + 0.1:
        lo -= 1
    return spans[lo:hi + 1]
