"""Sentences of a transcript, the unit an answer is shown, checked and cited in.

Whisper's segments are not sentences: it ends them mid-sentence and runs several sentences into one.
A sentence here is cut at sentence-ending punctuation and timed by its words, so a citation can point
at the sentence that carries an answer rather than at a whole segment or passage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .records import SENTENCE_END, Segment, Word


@dataclass(frozen=True)
class Span:
    start: float
    end: float
    text: str
    speaker: str | None = None
    context: str = ""  # its recording's name and the sentences either side of it
    parallel: str = ""  # the same moment in the other rendering (translation or spoken words)
    parallel_span: tuple[float, float] | None = None  # the time that other rendering (and `rendered`) covers
    foreign: bool = False  # speech not in English: a translation, or spoken words that have one
    rendered: str = ""  # the answering model's English rendering of its foreign words (translation.py)

    @property
    def evidence(self) -> str:
        """What the span attests: its words, and who said them."""
        return f"{self.speaker}: {self.text}" if self.speaker else self.text

    @property
    def said(self) -> str:
        """Its words in either rendering, without the speaker (what embeddings compare)."""
        return f"{self.text} {self.parallel} {self.rendered}".strip()

    @property
    def attests(self) -> str:
        """What a citation of this sentence vouches for: its words in either rendering."""
        return f"{self.evidence} {self.parallel} {self.rendered}".strip()


# "Mr." or "J." ends a word, not a sentence.
_ABBREVIATION = re.compile(r"^(?:mr|mrs|ms|dr|st|jr|sr|prof|vs|etc|no|[a-z])\.$", re.IGNORECASE)


# A sentence Whisper's segments cut in two is joined again across a pause up to this long (seconds),
# unless it already runs this long: unpunctuated speech would otherwise become one long "sentence".
# Speech whose last segment ends in a comma (or ; :) is punctuated and mid-sentence: it runs on to
# twice that, so a clause read after a breath ("..., seltsamen Vaganten, | namens Melchior Sternfels")
# stays with the sentence it completes.
MAX_SENTENCE_PAUSE = 1.0
MAX_JOINED_SECONDS = 10.0
CLAUSE_END = (",", ";", ":")


def sentences(segs: list[Segment]) -> list[Span]:
    """The sentences of some segments, timed by their words (a segment without words stays whole).

    Whisper ends segments mid-sentence ("nor of the circumstances" | "which led me to leave my native
    country."): a sentence runs on into the next segment of the same speaker unless a pause parts them,
    so an answer copied from the whole sentence can be checked against the whole sentence.
    """
    out: list[Span] = []
    current: list[Word] = []
    speaker = None

    def flush() -> None:
        if current:
            out.append(Span(current[0].start, current[-1].end, "".join(x.text for x in current).strip(), speaker))
            current.clear()
    for seg in segs:
        if not seg.words:
            flush()
            out.append(Span(seg.start, seg.end, seg.text, seg.speaker))
            continue
        if current and (seg.speaker != speaker or seg.words[0].start - current[-1].end > MAX_SENTENCE_PAUSE
                        or current[-1].end - current[0].start > _longest(current)):
            flush()
        speaker = seg.speaker
        for w in seg.words:
            current.append(w)
            if ends_sentence(w.text):
                flush()
    flush()
    return out


def ends_sentence(word: str) -> bool:
    """Whether a word ends its sentence: it ends in a full stop, question or exclamation mark (of any
    script) and is not an abbreviation."""
    return word.rstrip().endswith(SENTENCE_END) and not _ABBREVIATION.match(word.strip())


def text_sentences(text: str) -> list[str]:
    """The sentences of a text without times (a passage's), cut where `sentences` cuts timed words."""
    out: list[str] = []
    current: list[str] = []
    for word in text.split():
        current.append(word)
        if ends_sentence(word):
            out.append(" ".join(current))
            current = []
    return out + ([" ".join(current)] if current else [])


def _longest(words: list[Word]) -> float:
    """How long a sentence may already run and still be joined to the next segment (see above)."""
    return MAX_JOINED_SECONDS * (2 if words[-1].text.rstrip().endswith(CLAUSE_END) else 1)
