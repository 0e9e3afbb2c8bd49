"""A recording's summary and chapters, every sentence of them cited and checked like an answer.

The recording is cut into chapters where its talk turns (chapters.py). The answering model reads each
chapter's numbered sentences and gives a title and a few points under a JSON schema, each point
naming the sentence it comes from; earmark, never the model, turns that number into a citation, and a
point its sentence does not bear out is dropped, not shown: its words must be there (verify.supports,
as for answers), with the sentence's polarity (verify.negated), and the model, asked on its own, must
agree (`said_so`). The
whole is then summarised from the chapters' checked points, in groups that fit the model's context,
each summary sentence naming the points it rests on and checked against their transcript. A title
the chapter's words do not bear out is replaced by the chapter's first words, quoted.

A summary is made from the transcript as exported: redacted ranges (`earmark redact`) are never
shown to the model. It is kept in LIBRARY/summaries/HASH.json with what it was made from (transcript,
redactions, models, options) and made again when any of that changes. Written here rather than with
LangChain's map-reduce summarise chain: that chain's output carries no citations to check.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from . import chapters, verify
from .citations import widen
from .config import AnswerOptions, SummaryOptions
from .embed import Embedder
from .export import recorded_redactions, redact_transcript
from .llm import reply_or_nothing
from .records import Citation, Transcript, indexed, mmss
from .sentences import Span, sentences
from .atomic import write_atomic
from .store import Library

log = logging.getLogger(__name__)

# A summary answers one question, and its sentences are checked as answers to it: the words it is put
# in ("the recording discusses ...", "the speaker explains ...") claim nothing about what was said.
ASKED = "What does this recording or part discuss, describe, explain or mention? What do its speakers talk about?"
TITLE_MIN_WORDS = 3  # a sentence of fewer words is not quoted as a title if a longer one follows
TITLE_WORDS = 8  # words of a chapter's first sentence quoted as its title when the model's is not borne out
# Characters of a point or summary sentence, and of a title, at most (the schema bounds them): a small
# model told "at most fifteen words" copied whole 40-word sentences, at ~8 tokens/s on 2 cores.
POINT_CHARS = 120
TITLE_CHARS = 60
# Tokens the model may write for a chapter (a title and its points) or a piece of the whole: a point
# copied from a long sentence runs past the 200 an answer is given, and a cut reply is not JSON.
REPLY_TOKENS = 400
# Version of how summaries are made: a stored one made by another version is made again.
VERSION = 1


@dataclass(frozen=True)
class Point:
    """One checked summary sentence and the transcript spans that bear it out."""

    text: str
    citations: tuple[Citation, ...]
    evidence: str = field(default="", compare=False)  # the cited words in both renderings (not stored)

    def to_json(self) -> dict:
        return {"text": self.text, "citations": [c.to_json() for c in self.citations]}


@dataclass(frozen=True)
class Chapter:
    start: float
    end: float
    title: str
    points: tuple[Point, ...]

    def to_json(self) -> dict:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "title": self.title,
                "points": [p.to_json() for p in self.points]}


@dataclass(frozen=True)
class Summary:
    file_hash: str
    file: str
    summary: tuple[Point, ...]  # the whole recording, in a few sentences
    chapters: tuple[Chapter, ...]
    written: int  # summary sentences the model wrote (chapters' points and the whole's sentences)
    dropped: int  # of those, not borne out by their cited spans, so not shown
    titles_quoted: int = 0  # chapters whose title the model gave was not borne out (their first words instead)
    made_from: str = ""  # digest of the transcript, redactions, models and options it was made from

    def to_json(self) -> dict:
        """The stable `earmark summary --json` shape."""
        return {"file": self.file, "id": self.file_hash, "summary": [p.to_json() for p in self.summary],
                "chapters": [c.to_json() for c in self.chapters], "written": self.written, "dropped": self.dropped,
                "titles_quoted": self.titles_quoted}

    @classmethod
    def from_json(cls, d: dict, made_from: str = "") -> "Summary":
        def point(p: dict) -> Point:
            return Point(p["text"], tuple(Citation(**{**c, "file_hash": d["id"]}) for c in p["citations"]))
        return cls(d["id"], d["file"], tuple(point(p) for p in d["summary"]),
                   tuple(Chapter(c["start"], c["end"], c["title"], tuple(point(p) for p in c["points"]))
                         for c in d["chapters"]), d["written"], d["dropped"], d.get("titles_quoted", 0), made_from)


def path(library: Library, sha256: str) -> Path:
    """Where a recording's summary is kept."""
    return library.root / "summaries" / f"{sha256}.json"


def stored(library: Library, sha256: str) -> Summary | None:
    """The recording's kept summary, if one was made (whatever it was made from), else None."""
    p = path(library, sha256)
    if not p.exists():
        return None
    try:
        d = json.loads(p.read_text())
        return Summary.from_json(d["summary"], d.get("made_from", ""))
    except (ValueError, KeyError, TypeError):
        log.warning("the summary kept in %s is damaged; it will be made again", p)
        return None


def summarize(library: Library, embedder: Embedder, sha256: str, options: SummaryOptions = SummaryOptions(),
              answer_options: AnswerOptions = AnswerOptions(), again: bool = False) -> Summary:
    """The recording's summary and chapters: the kept one if it was made from what is there now (and not
    ``again``), else a new one, kept."""
    rec = library.find(sha256)
    transcript, made_from = _source(library, sha256, embedder.name, options, answer_options)
    kept = stored(library, sha256)
    if kept is not None and kept.made_from == made_from and not again:
        return kept
    made = replace(_make(transcript, rec.file_name, embedder, options, answer_options), made_from=made_from)
    write_atomic(path(library, sha256), json.dumps({"made_from": made_from, "summary": made.to_json()},
                                                   ensure_ascii=False, indent=1).encode())
    return made


def current(library: Library, sha256: str, redacted: list[tuple[float, float]] = (),
            options: SummaryOptions = SummaryOptions(), answer_options: AnswerOptions = AnswerOptions()) -> Summary | None:
    """The kept summary if it was made from the transcript as it is now (else None), without what
    touches the ``redacted`` ranges: a sentence citing one is left out, and a chapter overlapping one
    keeps no title of the model's (an export may redact more than the summary was made without)."""
    kept = stored(library, sha256)
    if kept is None or kept.made_from != _source(library, sha256, library.embed_model, options, answer_options)[1]:
        return None

    def clear(start: float, end: float) -> bool:
        return not any(end > a and start < b for a, b in redacted)

    def points(ps: tuple[Point, ...]) -> tuple[Point, ...]:
        return tuple(p for p in ps if all(clear(c.start, c.end) for c in p.citations))
    return replace(kept, summary=points(kept.summary), chapters=tuple(
        replace(c, points=points(c.points), title=c.title if clear(c.start, c.end) else "(title withheld: redacted speech)")
        for c in kept.chapters))


def _source(library: Library, sha256: str, embed_model: str, options: SummaryOptions,
            answer_options: AnswerOptions) -> tuple[Transcript, str]:
    """The transcript a summary is made from (as exported: redacted) and a digest of all it is made from."""
    transcript = redact_transcript(library.transcript(sha256), recorded_redactions(library.root, sha256))
    what = [VERSION, transcript.created, [s.text for s in transcript.segments], embed_model,
            answer_options.llm, answer_options.model, asdict(options)]
    return transcript, hashlib.sha256(json.dumps(what, default=str).encode()).hexdigest()[:16]


def _make(transcript: Transcript, name: str, embedder: Embedder, options: SummaryOptions,
          answer_options: AnswerOptions) -> Summary:
    spans = sentences_of(transcript)
    if not spans:  # silence, noise, music: nothing was said, so nothing is summarised
        return Summary(transcript.file_hash, name, (), (), 0, 0)
    vectors = embedder.embed([s.said for s in spans])
    parts = chapters.split(spans, vectors, options)
    starts = np.cumsum([0] + [len(p) for p in parts])
    made = [_chapter(n, part, vectors[a:a + len(part)], transcript.file_hash, name, options, answer_options)
            for n, (part, a) in enumerate(zip(parts, starts), 1)]
    chaps = tuple(c for c, _, _, _ in made)
    written, dropped = sum(m[1] for m in made), sum(m[2] for m in made)
    points = [p for c in chaps for p in c.points]
    whole, w, d = _whole(points, options, answer_options) if len(chaps) > 1 else (points, 0, 0)
    return Summary(transcript.file_hash, name, tuple(whole), chaps, written + w, dropped + d,
                   sum(not m[3] for m in made))


def sentences_of(transcript: Transcript) -> list[Span]:
    """The recording's indexed sentences, each foreign one with Whisper's English rendering beside it."""
    said = [s for s in sentences(indexed(transcript.segments, 0.0, float("inf"))) if s.text.strip()]
    if not transcript.translations:
        return said
    out = []
    for s in said:
        other = indexed(transcript.translations, s.start, s.end)
        out.append(replace(s, parallel=" ".join(t.text for t in other), foreign=bool(other),
                           parallel_span=(min(t.start for t in other), max(t.end for t in other)) if other else None))
    return out


def _chapter(n: int, spans: list[Span], vectors: np.ndarray, file_hash: str, name: str, options: SummaryOptions,
             answer_options: AnswerOptions) -> tuple[Chapter, int, int, bool]:
    """Chapter ``n`` of the recording with its title and checked points; how many points the model
    wrote for it, how many of them were dropped, and whether its title was borne out."""
    shown = _central(spans, vectors, options.shown)
    numbered = "\n".join(f"[{i}] ({mmss(s.start)}) {s.evidence}" + (f" (machine translation: {s.parallel})"
                                                                    if s.parallel else "")
                         for i, s in enumerate(shown, 1))
    schema = {"type": "object", "required": ["title", "points"], "properties": {
        "title": {"type": "string", "maxLength": TITLE_CHARS},
        "points": {"type": "array", "maxItems": options.points, "items": {
            "type": "object", "required": ["sentence", "text"],
            "properties": {"sentence": {"type": "integer", "minimum": 1, "maximum": len(shown)},
                           "text": {"type": "string", "maxLength": POINT_CHARS}}}}}}
    reply = _reply("chapter", schema, answer_options, sentences=numbered, points=str(options.points))
    points = []
    wrote = list({str(p.get("text", "")).strip(): p for p in reply.get("points", [])
                  if isinstance(p, dict) and str(p.get("text", "")).strip()}.values())  # (once each)
    for p in wrote[:options.points]:
        k = p.get("sentence")
        point = _checked(str(p["text"]).strip(), shown, k - 1, n, file_hash, name, answer_options) \
            if isinstance(k, int) and 1 <= k <= len(shown) else None
        if point is None:
            log.info("chapter %d: %r is not borne out by its sentence; dropped", n, p.get("text"))
        else:
            points.append(point)
    title = " ".join(str(reply.get("title", "")).split())
    whole = " ".join(s.attests for s in spans)
    title_ok = bool(title) and verify.supports(ASKED, title, whole)
    if not title_ok:  # the first sentence that says something ("1." is a sonnet's number)
        first = next((s.text.split() for s in spans if len(s.text.split()) >= TITLE_MIN_WORDS), spans[0].text.split())
        title = "\u201c" + " ".join(first[:TITLE_WORDS]) + ("\u2026" if len(first) > TITLE_WORDS else "") + "\u201d"
    chapter = Chapter(spans[0].start, spans[-1].end, title, tuple(points))
    return chapter, len(wrote[:options.points]), len(wrote[:options.points]) - len(points), title_ok


def _central(spans: list[Span], vecs: np.ndarray, most: int) -> list[Span]:
    """At most ``most`` sentences of a chapter, in time order: those closest to what the whole chapter
    says (the mean of its sentences' vectors, embedded once for the chapters), so a long chapter is read
    by its gist, within the context."""
    if len(spans) <= most:
        return spans
    keep = sorted(np.argsort(-(vecs @ vecs.mean(0)))[:most])
    return [spans[i] for i in keep]


def _checked(text: str, spans: list[Span], k: int, n: int, file_hash: str, name: str,
             answer_options: AnswerOptions) -> Point | None:
    """The point as a citation of sentence ``k`` (widened while its words run on into a neighbour), or
    None if that sentence does not bear it out. The citation quotes the words spoken."""
    chosen = widen(spans, k, ASKED, text, lambda s: s.attests)
    evidence = " ".join(s.attests for s in chosen)
    # The sentence it names must say it with the same polarity (verify.NEGATIONS): a small model drops
    # the "not" of "ask not what your country can do for you" and keeps every other word.
    named = spans[k].parallel if spans[k].foreign and spans[k].parallel else spans[k].text
    if verify.negated(text) != verify.negated(named) or not verify.supports(ASKED, text, evidence) \
            or not said_so(text, evidence, answer_options):
        return None
    times = [t for s in chosen for t in (s.start, s.end, *(s.parallel_span or ()))]
    cited = Citation(n=n, file=name, start=min(times), end=max(times), text=" ".join(s.text for s in chosen),
                     file_hash=file_hash)
    return Point(text, (cited,), evidence)


def _reply(prompt: str, schema: dict, answer_options: AnswerOptions, **variables: str) -> dict:
    """The model's reply to a summary prompt, or {} if it wrote no readable JSON (that part then has no
    sentences; a model that cannot be reached still fails the summary, in one line)."""
    return reply_or_nothing(prompt, schema, replace(answer_options, max_tokens=REPLY_TOKENS), **variables)


SUPPORT_SCHEMA = {"type": "object", "required": ["supported"], "properties": {"supported": {"type": "boolean"}}}


def said_so(claim: str, said: str, answer_options: AnswerOptions) -> bool:
    """Whether the answering model, reading what was said, finds that it says what the claim says: the
    second check of a summary sentence, after its words are found there (verify.supports), which cannot
    see meaning: "ask what your country can do" has the words of "ask not what your country can do".
    On probes of eval's real recordings it refused a claim the word check let through ("SPEAKER_6 says a
    mobile phone is too complicated" for "like a mobile phone, people might find it easier"); it is
    small (Qwen2.5 1.5B) and let a reversed one through too, so it is a second gate, never the only one."""
    return _reply("support", SUPPORT_SCHEMA, answer_options, claim=claim, said=said).get("supported") is True


def _whole(points: list[Point], options: SummaryOptions, answer_options: AnswerOptions) -> tuple[list[Point], int, int]:
    """A few checked sentences for the whole recording from its chapters' points: groups of at most
    ``options.group`` points are summarised, then their summaries, until one group is left."""
    written = dropped = 0
    while True:
        groups = [points[i:i + options.group] for i in range(0, len(points), options.group)] or [[]]
        out = []
        for group in groups:
            made, w = _overview(group, options, answer_options)
            out += made
            written, dropped = written + w, dropped + w - len(made)
        if len(groups) == 1 or len(out) >= len(points):  # (a level that shrinks nothing ends it too)
            return out, written, dropped
        points = out


def _overview(points: list[Point], options: SummaryOptions, answer_options: AnswerOptions) -> tuple[list[Point], int]:
    """The model's sentences about some points, each kept only if the points it names bear it out; and
    how many it wrote."""
    if not points:
        return [], 0
    schema = {"type": "object", "required": ["summary"], "properties": {"summary": {
        "type": "array", "maxItems": options.points, "items": {
            "type": "object", "required": ["points", "text"],
            "properties": {"points": {"type": "array", "minItems": 1, "items": {
                "type": "integer", "minimum": 1, "maximum": len(points)}},
                "text": {"type": "string", "maxLength": 2 * POINT_CHARS}}}}}}
    numbered = "\n".join(f"[{i}] {p.text}" for i, p in enumerate(points, 1))
    reply = _reply("overview", schema, answer_options, points=numbered, sentences=str(options.points))
    wrote = [s for s in reply.get("summary", []) if isinstance(s, dict) and str(s.get("text", "")).strip()]
    wrote = wrote[:options.points]
    out = []
    for s in wrote:
        cited = [points[k - 1] for k in dict.fromkeys(s.get("points") or []) if isinstance(k, int) and 1 <= k <= len(points)]
        text = str(s["text"]).strip()
        # A point is borne out, so its own words vouch for the sentences built on it, as do its spans.
        evidence = " ".join(f"{p.text} {p.evidence}" for p in cited)
        polarity = verify.negated(text) in {verify.negated(p.text) for p in cited}
        if cited and polarity and verify.supports(ASKED, text, evidence) and said_so(text, evidence, answer_options):
            citations = tuple(dict.fromkeys(c for p in cited for c in p.citations))
            out.append(Point(text, citations, evidence))
        else:
            log.info("summary sentence %r is not borne out by its points; dropped", text)
    return out, len(wrote)
