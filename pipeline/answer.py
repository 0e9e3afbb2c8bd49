"""Stage 7: answer a question from retrieved passages, citing `file @ mm:ss–mm:ss`, or say nothing found.

The model sees numbered passages and must reply with JSON naming one passage number and a short
answer (small models cite reliably only when their output is constrained). The code, never the model,
turns the number into a file and times: a number that was not given is dropped, the citation is
narrowed from the passage to the segment that carries the answer, and an answer whose words and
meaning are not found in its cited span is withheld (found: false) rather than shown.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from . import custody, prompts
from .config import AnswerOptions
from .embed import Embedder
from .llm import chat_model, parse_json, structured
from .records import SENTENCE_END, Answer, Citation, Hit, Segment, Word, mmss
from .search import SearchOptions, search
from .store import Library

log = logging.getLogger(__name__)

NOT_FOUND = "I found nothing in the recordings that answers this."


def answer_schema(n_passages: int) -> dict:
    """JSON schema of the model's reply: the passage number first, then the answer."""
    return {
        "type": "object",
        "properties": {
            "passage": {"type": "integer", "minimum": 0, "maximum": n_passages},
            "answer": {"type": "string"},
        },
        "required": ["passage", "answer"],
    }


def format_passages(hits: list[Hit]) -> str:
    """Numbered passages with their file and times, as the model sees them."""
    return "\n\n".join(f"[{i}] {h.file} {mmss(h.start)}-{mmss(h.end)}: {h.text}" for i, h in enumerate(hits, 1))


def ask(library: Library, embedder: Embedder, question: str, options: AnswerOptions = AnswerOptions(),
        search_options: SearchOptions | None = None, on_token: Callable[[str], None] | None = None) -> Answer:
    """Answer a question from the library, with verified citations, or say that nothing was found."""
    custody.log_question(library, question)  # only if the library or EARMARK_AUDIT_QUESTIONS asks for it
    search_options = replace(search_options or SearchOptions(), k=options.k)
    hits = search(library, embedder, question, search_options)
    hits = relevant(embedder, question, hits, options.min_relevance)
    if not hits:
        return Answer(question, NOT_FOUND, False)
    reply = _generate(question, hits, options, on_token)
    n, text = reply.get("passage"), str(reply.get("answer", "")).strip()
    if not isinstance(n, int) or not 1 <= n <= len(hits) or not text:
        return Answer(question, NOT_FOUND, False)
    citation = narrow(library, embedder, n, hits[n - 1], question, text)
    if citation is None:
        return Answer(question, NOT_FOUND, False)
    return Answer(question, text, True, (citation,))


def relevant(embedder: Embedder, question: str, hits: list[Hit], floor: float, spread: float = 0.2) -> list[Hit]:
    """Hits worth showing the model: similar enough to the question, and near the best one.

    Similarity is the embedder's cosine, whatever search mode ranked the hits. A small model shown a
    weakly related passage beside the right one borrows words from it, so passages far below the best
    are left out; if even the best is below the floor, nothing is relevant.
    """
    if not hits:
        return []
    vecs = embedder.embed([question] + [h.text for h in hits])
    sims = vecs[1:] @ vecs[0]
    best = float(sims.max())
    if best < floor:
        log.info("best passage %.3f below relevance floor %.2f", best, floor)
        return []
    return [h for h, s in zip(hits, sims) if s >= max(floor, best - spread)]


def _generate(question: str, hits: list[Hit], options: AnswerOptions,
              on_token: Callable[[str], None] | None) -> dict:
    messages = prompts.load("answer").format_messages(passages=format_passages(hits), question=question)
    model = structured(chat_model(options), options.llm, answer_schema(len(hits)))
    parts = []
    for chunk in model.stream(messages):
        parts.append(chunk.content)
        if on_token:
            on_token(chunk.content)
    return parse_json("".join(parts))


@dataclass(frozen=True)
class Span:
    start: float
    end: float
    text: str
    speaker: str | None = None

    @property
    def evidence(self) -> str:
        """What the span attests: its words, and who said them."""
        return f"{self.speaker}: {self.text}" if self.speaker else self.text


def sentences(segs: list[Segment]) -> list[Span]:
    """The sentences of some segments, timed by their words (a segment without words stays whole)."""
    out: list[Span] = []
    for seg in segs:
        if not seg.words:
            out.append(Span(seg.start, seg.end, seg.text, seg.speaker))
            continue
        current: list[Word] = []
        for w in seg.words:
            current.append(w)
            if w.text.rstrip().endswith(SENTENCE_END) or w is seg.words[-1]:
                out.append(Span(current[0].start, current[-1].end, "".join(x.text for x in current).strip(),
                                seg.speaker))
                current = []
    return out


def narrow(library: Library, embedder: Embedder, n: int, hit: Hit, question: str, answer: str) -> Citation | None:
    """The sentence(s) of the cited passage that carry the answer, or None if none supports it.

    For a translated passage the support is looked for in the English rendering, and the citation
    quotes the words actually spoken in that span.
    """
    transcript = library.transcript(hit.file_hash)
    pool = transcript.translations if hit.translated else transcript.segments
    spans = sentences([s for s in pool if s.flag is None and s.end > hit.start and s.start < hit.end])
    if not spans:
        return None
    vecs = embedder.embed([answer] + [s.text for s in spans])
    sim = vecs[1:] @ vecs[0]
    overlap = np.array([novel_support(question, answer, s.evidence) for s in spans])
    best = int(np.argmax(sim + overlap))
    if not supports(question, answer, spans[best].evidence, float(sim[best])):
        log.info("answer %r not supported by %s (overlap %.2f, sim %.2f)", answer, hit.file, overlap[best], sim[best])
        return None
    chosen = _widen(spans, best, question, answer)
    start, end = chosen[0].start, chosen[-1].end
    if hit.translated:
        spoken = [s for s in transcript.segments if s.end > start and s.start < end]
        start, end = min([start] + [s.start for s in spoken]), max([end] + [s.end for s in spoken])
        text = " ".join(s.text for s in spoken)
    else:
        text = " ".join(s.text for s in chosen)
    return Citation(n=n, file=hit.file, start=start, end=end, text=text, file_hash=hit.file_hash)


def _widen(spans: list[Span], best: int, question: str, answer: str) -> list[Span]:
    """Add neighbouring sentences while the answer's new words run on into them."""
    lo = hi = best

    def support(a: int, b: int) -> float:
        return novel_support(question, answer, " ".join(s.evidence for s in spans[a:b + 1]))
    while hi + 1 < len(spans) and support(lo, hi + 1) > support(lo, hi) + 0.1:
        hi += 1
    while lo > 0 and support(lo - 1, hi) > support(lo, hi) + 0.1:
        lo -= 1
    return spans[lo:hi + 1]

_STOP = frozenset("a an the of to in on at for and or but is are was were be been it its this that with as by "
                  "from he she they we you i his her their our your what who where when which how did do does".split())


def words(text: str) -> list[str]:
    """Lower-case, accent-free word tokens (letters and digits), for matching answers to transcripts."""
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return re.findall(r"\w+", text)


# Share of an answer's new words that must occur in its cited span.
MIN_NOVEL_SUPPORT = 0.6
# When an answer adds no words to its question, its meaning must be this close to the span.
MIN_RESTATEMENT_SIMILARITY = 0.5


def novel_words(question: str, answer: str) -> list[str]:
    """The answer's content words that its question did not already contain: what it claims."""
    asked = set(words(question))
    return [w for w in words(answer) if w not in _STOP and w not in asked]


def novel_support(question: str, answer: str, span: str) -> float:
    """Share of the answer's new words found in the span (0.0 when it adds none)."""
    new = novel_words(question, answer)
    have = set(words(span))
    return sum(w in have for w in new) / len(new) if new else 0.0


def supports(question: str, answer: str, span: str, similarity: float) -> bool:
    """Whether a span attests an answer: its numbers all occur there and most of its new words do.

    Similarity alone never vouches for new facts (a question restated around an invented number is
    still similar to the span); it only decides for an answer that adds no words to the question.
    """
    new = novel_words(question, answer)
    if not new:
        return similarity >= MIN_RESTATEMENT_SIMILARITY
    have = set(words(span))
    if any(w not in have for w in new if any(c.isdigit() for c in w)):
        return False
    return novel_support(question, answer, span) >= MIN_NOVEL_SUPPORT
