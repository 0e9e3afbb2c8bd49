"""Speaker turns from a file (RTTM or STM) and their labels on segments and passages.

Who spoke when comes from a turns file given at ingest (`--speakers FILE`) or lying beside the
recording (`talk.rttm` / `talk.stm` for `talk.wav`); without one, from diarize.py (found by voice).
Segments are split where the speaker changes between their words, so every segment, and so every
citation, belongs to one speaker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import EarmarkError
from .records import Segment, Word

SIDECARS = (".stm", ".rttm")  # .stm first: it usually carries names where .rttm carries ids


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: str
    text: str = ""  # the words of the turn, where the file gives them (STM)


def read_turns(path: Path) -> list[Turn]:
    """Speaker turns from an RTTM (`SPEAKER file 1 start dur ... name ...`) or STM (`file ch name start end ...`)."""
    turns = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        f = line.split()
        if not f or line.startswith(";;"):
            continue
        try:
            if f[0] == "SPEAKER":
                start, dur = float(f[3]), float(f[4])
                turns.append(Turn(start, start + dur, f[7]))
            else:
                turns.append(Turn(float(f[3]), float(f[4]), f[2], " ".join(f[5:])))
        except (IndexError, ValueError) as e:
            raise EarmarkError(f"{Path(path).name} line {n}: not an RTTM or STM speaker turn") from e
    return sorted(turns, key=lambda t: t.start)


def sidecar(audio_path: Path) -> Path | None:
    """A speaker-turns file beside a recording, if there is one."""
    for ext in SIDECARS:
        candidate = audio_path.with_suffix(ext)
        if candidate.exists():
            return candidate
    return None


def speaker_at(turns: list[Turn], start: float, end: float) -> str | None:
    """The speaker whose turns overlap [start, end] most; the nearest turn within 1 s if none overlaps."""
    best, best_overlap = None, 0.0
    for t in turns:
        overlap = min(end, t.end) - max(start, t.start)
        if overlap > best_overlap:
            best, best_overlap = t.speaker, overlap
    if best is None and turns:
        mid = (start + end) / 2
        gap, nearest = min((min(abs(mid - t.start), abs(mid - t.end)), t.speaker) for t in turns)
        best = nearest if gap <= 1.0 else None
    return best


def label(segments: list[Segment], turns: list[Turn]) -> list[Segment]:
    """Segments split at speaker changes and labelled, renumbered in order."""
    out: list[Segment] = []
    for seg in segments:
        for piece in _split(seg, turns):
            out.append(replace(piece, id=len(out)))
    return out


def _split(seg: Segment, turns: list[Turn]) -> list[Segment]:
    if not seg.words:
        return [replace(seg, speaker=speaker_at(turns, seg.start, seg.end))]
    groups: list[tuple[str | None, list[Word]]] = []
    for w in seg.words:
        who = speaker_at(turns, w.start, w.end)
        if groups and groups[-1][0] == who:
            groups[-1][1].append(w)
        else:
            groups.append((who, [w]))
    return [replace(seg, start=ws[0].start, end=ws[-1].end, text="".join(w.text for w in ws).strip(),
                    words=tuple(ws), speaker=who) for who, ws in groups]


def speaker_times(segments: list[Segment]) -> dict[str, tuple[int, float]]:
    """Each speaker label with its number of segments and seconds spoken, in order of first appearance."""
    out: dict[str, tuple[int, float]] = {}
    for s in segments:
        if s.speaker is not None:
            n, secs = out.get(s.speaker, (0, 0.0))
            out[s.speaker] = (n + 1, secs + s.end - s.start)
    return out


_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
             "eighth": 8, "ninth": 9, "tenth": 10, "last": -1}
_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
            "ten": 10}
_SPEAKER_NOUN = r"(?:speaker|voice|person to speak|participant to speak)"
# "met the speaker two weeks ago" counts weeks, not speakers.
_UNITS = r"seconds?|minutes?|hours?|days?|weeks?|months?|years?|times|o'clock|percent|%"
# "the second speaker", "the 2nd voice", "the last person to speak"; "speaker 2", "speaker two".
_BY_ORDER = re.compile(
    rf"\bthe\s+(?P<ordinal>{'|'.join(_ORDINALS)}|\d+(?:st|nd|rd|th))\s+{_SPEAKER_NOUN}\b"
    rf"|\bspeaker\s+(?P<number>\d+|{'|'.join(_NUMBERS)})\b(?!\s+(?:{_UNITS}))", re.IGNORECASE)


@dataclass(frozen=True)
class SpeakerByOrder:
    """A speaker a question names by when they first spoke: ``n`` counts from 1, -1 is the last."""

    n: int
    phrase: str  # as the question words it ("the second speaker")

    def naming(self, question: str, label: str = "someone") -> str:
        """The question with the speaker's label in one recording ("Sheila") for the words that name them
        by order; by default "someone": what it asks about, whoever they are."""
        return question.replace(self.phrase, label)

    def of(self, segments: list[Segment]) -> str | None:
        """The label of that speaker in a recording's segments, or None if it has no such speaker."""
        order = list(speaker_times(segments))
        k = self.n - 1 if self.n > 0 else len(order) + self.n
        return order[k] if 0 <= k < len(order) else None


# "What did the participant who agreed with the LCD suggestion say ...?": a speaker named by what
# they said. The deed runs from "who" to the verb of what is asked about them.
_PERSON_NOUN = r"(?:speaker|participant|person|caller|voice|man|woman|one)"
_ASKED_VERB = (r"(?:say|said|says|think|thinks|thought|mention|mentioned|suggest|suggested|propose|proposed|"
               r"want|wanted|ask|asked|answer|answered|reply|replied|add|added|claim|claimed|argue|argued|"
               r"recommend|recommended|prefer|preferred|describe|described|call|called)")
_BY_DEED = re.compile(rf"\bthe\s+{_PERSON_NOUN}\s+(?:who|that)\s+(?P<deed>\w.*?)(?=\s+{_ASKED_VERB}\b)",
                      re.IGNORECASE)


@dataclass(frozen=True)
class SpeakerByDeed:
    """A speaker a question names by something they said or did: "the participant who agreed with the
    LCD suggestion". Search finds the moment the deed describes, and its speaker is the one asked about."""

    deed: str  # "agreed with the LCD suggestion"
    phrase: str  # as the question words it ("the participant who agreed with the LCD suggestion")

    def naming(self, question: str, label: str | None = None) -> str:
        """The question with the speaker's label in their recording for the words that describe them;
        without one, the question as asked: unlike an order of speaking, the deed is part of what it
        is about ("what did someone say people would find easier?" is about nothing in particular)."""
        return question.replace(self.phrase, label) if label else question

    def of(self, spans: list, llm=None) -> str | None:
        """The label of the speaker who did the deed, among the speakers of ``spans`` (sentences of the
        moment search found for it), or None if they have no speakers. Telling "agreed with the LCD
        suggestion" from "raised the LCD idea" takes reading, not similarity (multilingual-e5 chose
        the speaker whose sentence says "LCD display" most plainly for both), so the answering model
        reads the lines and names one of their labels, under a JSON schema that allows only those.
        ``llm``: the AnswerOptions of the model to ask (default: the configured one)."""
        from .verify import addressed

        # Speech addressed to an AI is not shown to the model (verify.addressed), nor its speaker offered.
        spans = [s for s, flagged in zip(spans, addressed([s.text for s in spans])) if not flagged]
        labels = list(dict.fromkeys(s.speaker for s in spans if s.speaker))
        if len(labels) < 2:
            return labels[0] if labels else None
        from .llm import reply_or_nothing

        schema = {"type": "object", "properties": {"speaker": {"type": "string", "enum": labels}},
                  "required": ["speaker"]}
        label = reply_or_nothing("speaker", schema, llm, passage="\n".join(s.evidence for s in spans if s.speaker),
                                 deed=self.deed, labels=", ".join(labels)).get("speaker")
        return label if label in labels else None


@dataclass(frozen=True)
class Query:
    """A question as earmark reads it, parsed once (`read`): its words, and the speaker it asks about by
    order of speaking or by a deed, if it names one. Search and the answer step both take it as it is."""

    text: str
    speaker: SpeakerByOrder | SpeakerByDeed | None = None

    @property
    def topic(self) -> str:
        """What it asks about, whoever the speaker is ("what did someone say about Chicago?")."""
        return self.speaker.naming(self.text) if self.speaker else self.text

    def in_recording(self, label: str | None) -> str:
        """The question as it stands in a recording where the speaker asked about is ``label``."""
        return self.speaker.naming(self.text, label) if self.speaker and label else self.topic

    def plainly(self) -> Query:
        """The question read as naming no one."""
        return replace(self, speaker=None)


def read(question: str, by_speaker: bool = True) -> Query:
    """The question parsed once; ``by_speaker`` False reads it as naming no one."""
    return Query(question, named(question) if by_speaker else None)


def named(question: str) -> SpeakerByOrder | SpeakerByDeed | None:
    """The speaker a question asks about by order of speaking or by what they said, if it does."""
    if ordered := by_order(question):
        return ordered
    m = _BY_DEED.search(question)
    return SpeakerByDeed(m["deed"], m.group(0)) if m else None


def by_order(question: str) -> SpeakerByOrder | None:
    """The speaker a question names by order of speaking ("what did the second speaker say about
    Chicago?"), if it does. Speakers are numbered by first appearance, as diarization names them
    (SPEAKER_1, SPEAKER_2, ...) and as a turns file's speakers first speak."""
    m = _BY_ORDER.search(question)
    if not m:
        return None
    if m["number"]:
        word = m["number"].lower()
        n = int(word) if word.isdigit() else _NUMBERS[word]
    else:
        word = m["ordinal"].lower()
        n = _ORDINALS[word] if word in _ORDINALS else int(word[:-2])
    return SpeakerByOrder(n, m.group(0)) if n != 0 else None


def rename_segments(segments: tuple[Segment, ...], old: str, new: str) -> tuple[Segment, ...]:
    """The segments with speaker label `old` relabelled `new` (two labels become one if `new` exists)."""
    known = speaker_times(list(segments))
    if old not in known:
        raise EarmarkError(f"no speaker {old!r} in this transcript; its speakers are: "
                           f"{', '.join(known) or 'none (ingest with --speakers first)'}")
    if not new.strip() or new.strip() != new or ":" in new:
        raise EarmarkError(f"{new!r} is not a usable speaker name (no leading/trailing spaces, no ':')")
    return tuple(replace(s, speaker=new) if s.speaker == old else s for s in segments)
