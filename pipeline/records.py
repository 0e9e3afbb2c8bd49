"""Typed records that flow between stages. Every piece of text carries its file and its seconds."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone


def now() -> str:
    """The current UTC time, ISO 8601, to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class Word:
    start: float  # seconds on the original file's timeline
    end: float
    text: str  # as Whisper wrote it, leading space included: "".join(words) rebuilds the text
    probability: float


@dataclass(frozen=True)
class Segment:
    id: int  # index within its transcript
    start: float  # seconds on the original file's timeline
    end: float
    text: str
    words: tuple[Word, ...]
    language: str  # detected for the speech region this segment came from
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    flag: str | None = None  # why it is kept out of the index ("repetition", "no-speech"), else None
    speaker: str | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "Segment":
        words = tuple(Word(**w) for w in d.get("words", ()))
        return cls(**{**d, "words": words})


@dataclass(frozen=True)
class Transcript:
    file_hash: str  # SHA-256 of the original bytes: the recording's identity
    file_name: str  # basename as ingested
    duration: float
    segments: tuple[Segment, ...]
    model: dict  # which model, version and settings produced it
    created: str  # ISO time
    # English renderings of the non-English speech, on the same timeline (empty if all English).
    translations: tuple[Segment, ...] = ()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Transcript":
        segs = tuple(Segment.from_dict(s) for s in d["segments"])
        trans = tuple(Segment.from_dict(s) for s in d.get("translations", ()))
        return cls(**{**d, "segments": segs, "translations": trans})

    @property
    def languages(self) -> list[str]:
        """Languages in order of first appearance."""
        return list(dict.fromkeys(s.language for s in self.segments))


@dataclass(frozen=True)
class Passage:
    id: str  # "<file_hash[:16]>:<index>", stable across re-indexing
    file_hash: str
    file_name: str
    start: float
    end: float
    text: str
    segment_ids: tuple[int, ...]
    language: str  # the language spoken
    translated: bool = False  # text is the English rendering of `language` speech


@dataclass(frozen=True)
class Hit:
    passage_id: str
    file_hash: str
    file: str
    start: float
    end: float
    text: str
    score: float
    translated: bool = False  # the matched text is an English rendering, not the words spoken
    # For a query that names a speaker by order ("the second speaker"): their label in this recording.
    speaker: str | None = None

    def to_json(self) -> dict:
        """The stable `--json` shape of one search hit."""
        return {"file": self.file, "start": round(self.start, 3), "end": round(self.end, 3),
                "text": self.text, "score": round(float(self.score), 4)}


@dataclass(frozen=True)
class Citation:
    n: int  # passage number as shown to the model, 1-based
    file: str
    start: float
    end: float
    text: str  # the transcript text of the cited span
    file_hash: str = ""

    def to_json(self) -> dict:
        return {"n": self.n, "file": self.file, "start": round(self.start, 3),
                "end": round(self.end, 3), "text": self.text}


@dataclass(frozen=True)
class Answer:
    question: str
    answer: str
    found: bool
    citations: tuple[Citation, ...] = field(default_factory=tuple)

    def to_json(self) -> dict:
        """The stable `--json` shape of an answer."""
        return {"question": self.question, "answer": self.answer, "found": self.found,
                "citations": [c.to_json() for c in self.citations]}


# Punctuation that ends a sentence, in the scripts Whisper writes.
SENTENCE_END = (".", "?", "!", "。", "？", "！", "…")


def during(items, start: float, end: float) -> list:
    """The items (segments, sentences, hits: anything with start and end) that overlap start to end."""
    return [s for s in items if s.end > start and s.start < end]


def indexed(segments, start: float, end: float) -> list:
    """The segments overlapping start to end that search indexes (flagged ones are Whisper's failures)."""
    return during([s for s in segments if s.flag is None], start, end)


def mmss(seconds: float) -> str:
    """Format seconds as mm:ss (h:mm:ss past an hour), rounded down."""
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


def span(start: float, end: float) -> str:
    """A cited span as `mm:ss–mm:ss`: the start rounded down and the end up, so it always covers the words."""
    import math

    return f"{mmss(start)}–{mmss(math.ceil(end))}"
