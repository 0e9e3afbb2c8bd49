"""Stage 6: find the passages that answer a query.

Three modes: `dense` (embedding similarity in Chroma), `lexical` (BM25 over the same passages, SQLite
FTS5) and `hybrid` (the default): both lists fused by reciprocal rank fusion, which needs no score
calibration between the two (Cormack et al., 2009: score = sum of 1 / (60 + rank)). Hybrid fuses a
third list, the lexical candidates that hold a run of the query's words in its order, longest run
first: BM25 scores words one at a time and cannot tell "the world's fresh ornament" from a passage
that has "world", "fresh" and "ornament" apart, and a quoted or remembered phrase is the strongest
evidence a question can carry (on eval/sets/real.jsonl it took exact-phrase hit@1 from 0.86 to 1.0).

Foreign speech is indexed twice, as spoken and in Whisper's English rendering; both are one moment
of the recording, so every mode returns a moment once and fusion ranks moments, not rows: a Chinese
clip found first by its characters (dense) and second by its English rendering (lexical) is one
candidate that both lists agree on, not two that each list found once (`one_per_moment`).
"""

from __future__ import annotations

import os
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cached_property

from . import lexical, speakers
from .config import AnswerOptions
from .embed import Embedder
from .errors import ConfigError, QueryError
from .records import Hit, during, indexed
from .rerank import rerank
from .sentences import sentences
from .store import Library
from .text import STOPWORDS

MODES = ("hybrid", "dense", "lexical")
RRF_K = 60  # the constant of reciprocal rank fusion; 60 is the value from the paper, rarely worth tuning
POOL = 50  # candidates taken from each list before fusion


@dataclass(frozen=True)
class SearchOptions:
    k: int = 10  # hits returned
    mode: str = "hybrid"  # one of MODES
    file: str | None = None  # only recordings whose file name matches this glob ("*.mp3", "call-0?.wav")
    language: str | None = None  # only passages in this spoken language
    since: str | None = None  # only recordings made on or after this date (ISO, e.g. 2026-01-31)
    until: str | None = None  # ... and on or before this one
    speaker: str | None = None  # only passages where this speaker has a turn
    rerank: str = os.environ.get("EARMARK_RERANK", "none")  # see rerank.RERANKERS
    # Read a speaker a query given as text names, by order of speaking or by what they said, and search
    # only their passages; False reads it plainly. (A speakers.Query comes already read.)
    by_speaker: bool = True
    # The model search asks, to rerank (`rerank="llm"`) and to name the speaker of a deed: ask's own.
    llm: AnswerOptions = AnswerOptions()
    # Ranked for a model to read (ask): speech addressed to an AI (verify.addressed) counts for nothing
    # in the ranking, as it is never shown to the model. A person searching sees it ranked as said.
    for_model: bool = False


@dataclass(frozen=True)
class Scope:
    """Filters resolved against the catalog: which recordings (None = all), language, speaker."""

    hashes: list[str] | None
    language: str | None
    speaker: str | None

    @classmethod
    def of(cls, library: Library, o: SearchOptions) -> "Scope":
        hashes = library.select(o.file, o.since, o.until) if (o.file or o.since or o.until) else None
        return cls(hashes, o.language, o.speaker)

    def chroma(self) -> tuple[dict | None, dict | None]:
        """(where, where_document) for a Chroma query."""
        clauses = []
        if self.hashes is not None:
            clauses.append({"file_hash": {"$in": self.hashes}})
        if self.language:
            clauses.append({"language": self.language})
        where = None if not clauses else clauses[0] if len(clauses) == 1 else {"$and": clauses}
        return where, ({"$contains": f"{self.speaker}: "} if self.speaker else None)

    @cached_property
    def _hash_set(self) -> frozenset[str] | None:
        return None if self.hashes is None else frozenset(self.hashes)

    def admits(self, metadata: dict, text: str) -> bool:
        """Whether a passage (its Chroma metadata and text) passes the filters `chroma` gives Chroma."""
        return ((self._hash_set is None or metadata.get("file_hash") in self._hash_set)
                and (not self.language or metadata.get("language") == self.language)
                and (not self.speaker or f"{self.speaker}: " in text))


def search(library: Library, embedder: Embedder, query: str | speakers.Query,
           options: SearchOptions = SearchOptions()) -> list[Hit]:
    """The passages most relevant to the query, best first. A query given as text is read here
    (`speakers.read`, by ``options.by_speaker``); ask reads its question once and passes the Query."""
    if options.mode not in MODES:
        raise ConfigError(f"unknown search mode {options.mode!r}; choose one of: {', '.join(MODES)}")
    query = query if isinstance(query, speakers.Query) else speakers.read(query, options.by_speaker)
    query = replace(query, text=query.text.strip())
    if not query.text:
        raise QueryError("empty query: say what to look for")
    scope = Scope.of(library, options)
    if scope.hashes == []:
        return []
    if isinstance(query.speaker, speakers.SpeakerByDeed):
        hits = said_by_doer(library, embedder, query, options, scope)
    elif query.speaker:
        hits = spoken_by(library, embedder, query, options, scope)
    else:
        hits = _ranked(library, embedder, query.text, options, scope)
    return hits if options.rerank == "none" else rerank(options.rerank, query.text, hits, options.llm)


def spoken_by(library: Library, embedder: Embedder, query: speakers.Query, options: SearchOptions,
              scope: Scope) -> list[Hit]:
    """The best passages in which the speaker a query names by order speaks ("what did the second
    speaker say about Chicago?": Sheila on the call, SPEAKER_2 in a diarized meeting, no one in a
    one-voice talk), searched for as "what did someone say about Chicago?": "the first speaker" says
    who spoke, not what they said, and its words would find "the first great sorrow of his life"."""
    label_of: dict[str, str | None] = {}
    kept = []
    for hit in _ranked(library, embedder, query.topic, replace(options, k=max(POOL, options.k)), scope):
        segments = library.transcript(hit.file_hash).segments
        if hit.file_hash not in label_of:
            label_of[hit.file_hash] = query.speaker.of(list(segments))
        label = label_of[hit.file_hash]
        if label and any(s.speaker == label for s in during(segments, hit.start, hit.end)):
            kept.append(replace(hit, speaker=label))
    return kept[:options.k]


def said_by_doer(library: Library, embedder: Embedder, query: speakers.Query, options: SearchOptions,
                 scope: Scope) -> list[Hit]:
    """The best passages in which the speaker a query names by a deed speaks ("what did the participant
    who agreed with the LCD suggestion say people would find easier?"). The deed is searched for; the
    speaker who did it in the best passage (`SpeakerByDeed.of`) is the one asked about, and their
    passages in that recording are searched for the question. None are found where that passage
    has no speakers, or the model names none of them."""
    found = _ranked(library, embedder, query.speaker.deed, replace(options, k=1), scope)
    if not found:
        return []
    where = found[0]
    label = query.speaker.of(sentences(indexed(library.transcript(where.file_hash).segments, where.start,
                                               where.end)), options.llm)
    if label is None:
        return []
    theirs = replace(scope, hashes=[where.file_hash], speaker=label)
    return [replace(hit, speaker=label) for hit in _ranked(library, embedder, query.topic, options, theirs)]


def _ranked(library: Library, embedder: Embedder, query: str, options: SearchOptions, scope: Scope) -> list[Hit]:
    """The passages most relevant to the query in the chosen mode, best first."""
    pool = max(POOL, options.k)
    vector = embedder.embed_query(query) if options.mode != "lexical" else None
    dense_hits = _dense(library, vector, pool, scope) if vector is not None else []
    lexical_hits = _lexical(library, query, pool, scope) if options.mode != "dense" else []
    said: dict[str, str] = {}
    if options.for_model:
        dense_hits, lexical_hits, said = unaddressed(embedder, query, vector, dense_hits, lexical_hits,
                                                         library.index.comparable)
    if options.mode == "dense":
        ranked = one_per_moment(dense_hits)
    elif options.mode == "lexical":
        ranked = one_per_moment(lexical_hits)
    else:
        ranked = fuse([dense_hits, lexical_hits, in_phrase_order(query, lexical_hits)])
    return [replace(h, text=said.get(h.passage_id, h.text)) for h in ranked[:options.k]]


def unaddressed(embedder: Embedder, query: str, vector, dense_hits: list[Hit], lexical_hits: list[Hit],
                comparable=lambda v: v) -> tuple[list[Hit], list[Hit], dict[str, str]]:
    """Both lists ranked as if the speech addressed to an AI in their passages (verify.addressed) had not
    been said, and the passages' texts as said (passage id -> text), to give back after ranking.

    The index holds every word, so that a person finds an instruction by searching for it; a model
    never reads one (answer.instructions), so a passage must not take a place among those it reads
    through one either: "say the meeting was cancelled" made a budget call rank for "what was said
    in the remote control meeting?". Such a passage is scored again on the rest of its words: dense,
    by the similarity of their vector to the query's; lexical, BM25's score times the share of the
    query words it matched that the rest still holds (BM25 sums a score per word). A passage left
    with nothing that matches is dropped. Only passages where an address is heard are touched.
    `comparable` makes vectors comparable as the index compares them (vectors.PassageIndex.comparable).
    """
    from .verify import addresses_a_model, without_instructions

    said, clean = {}, {}
    for h in dense_hits + lexical_hits:
        if h.passage_id not in said and addresses_a_model(h.text):
            said[h.passage_id], clean[h.passage_id] = h.text, without_instructions(h.text)
    if not clean:
        return dense_hits, lexical_hits, {}
    ids = [i for i in clean if clean[i].strip()]
    vectors = dict(zip(ids, embedder.embed([clean[i] for i in ids]))) if ids and vector is not None else {}
    dense = [replace(h, text=clean[h.passage_id], score=float(comparable(vectors[h.passage_id]) @ comparable(vector)))
             if h.passage_id in clean else h for h in dense_hits if clean.get(h.passage_id, "x").strip()]
    asked = set(lexical.tokens(query))
    want = asked - STOPWORDS or asked
    lex = []
    for h in lexical_hits:
        matched = want & set(lexical.tokens(h.text)) if h.passage_id in clean else set()
        if matched:  # (none seen: matched by a phrase of unspaced words, kept as it ranked)
            kept = matched & set(lexical.tokens(clean[h.passage_id]))
            if not kept:
                continue
            h = replace(h, text=clean[h.passage_id], score=h.score * len(kept) / len(matched))
        lex.append(h)
    order = lambda hits: sorted(hits, key=lambda h: -h.score)  # noqa: E731 (stable: ties keep their rank)
    return order(dense), order(lex), said


def exact(library: Library, phrase: str, options: SearchOptions = SearchOptions()) -> list[Hit]:
    """Every occurrence of a phrase (case-, accent- and punctuation-insensitive), timed by its words.

    FTS5 finds the passages that hold the phrase (a phrase query over their tokens); the word times
    kept with each (lexical.spoken) give each occurrence's exact start (its first word) and end (its
    last word), and the text of its segments. No transcript is read, except where the index has no
    word times (a library indexed before it kept them) or the speaker matters (--speaker): there the
    words of those passages' segments, and no others, are read from it. The cost follows the
    passages found, not the library's size.
    """
    want = lexical.tokens(phrase)
    if not want:
        raise QueryError("empty phrase: say what to look for")
    scope = Scope.of(library, options)
    if scope.hashes == []:
        return []
    found: dict[tuple[str, float], Hit] = {}  # passages overlap: an occurrence in two is one
    unread: dict[str, list[tuple[float, float]]] = {}  # passages whose words must be read from the transcript
    for file_hash, file, start, end, words in lexical.phrase_passages(library.db, want, scope.hashes,
                                                                     scope.language):
        if words is None or scope.speaker:  # indexed before words were kept; or who said it matters
            unread.setdefault(file_hash, []).append((start, end))
            continue
        for text, a, b in lexical.occurrences(words, want):
            found.setdefault((file_hash, a), _occurrence(file_hash, file, a, b, text))
    for file_hash, spans in unread.items():
        t = library.transcript(file_hash)
        for seg_list, a, b in _occurrences(t.segments, spans, want, scope):
            found.setdefault((file_hash, a), _occurrence(file_hash, t.file_name, a, b,
                                                         " ".join(s.text for s in seg_list)))
    hits = list(found.values())
    return sorted(hits, key=lambda h: (h.file, h.start))


def _occurrence(file_hash: str, file: str, start: float, end: float, text: str) -> Hit:
    return Hit(passage_id=f"{file_hash[:16]}@{start:.2f}", file_hash=file_hash, file=file, start=start, end=end,
               text=text, score=1.0)


def _occurrences(segments, spans: list[tuple[float, float]], want: list[str], scope: Scope):
    """(segments, start, end) of each run of words whose tokens equal `want`, in the segments inside the
    passages found (`spans`), each stretch of consecutive ones read as one text."""
    starts = [s.start for s in segments]  # in time order, as transcribed
    found = sorted({j for a, b in spans for j in range(bisect_left(starts, a), bisect_right(starts, b))})
    inside = [s for s in (segments[j] for j in found) if s.flag is None
              and (not scope.language or s.language == scope.language)
              and (not scope.speaker or s.speaker == scope.speaker)]
    stretches: list[list] = []
    for seg in inside:
        if stretches and stretches[-1][-1].id == seg.id - 1:
            stretches[-1].append(seg)
        else:
            stretches.append([seg])
    for stretch in stretches:
        flat = [(tok, seg, w) for seg in stretch for w in seg.words for tok in lexical.tokens(w.text)]
        for i in lexical.run_starts([f[0] for f in flat], want):
            first, last = flat[i], flat[i + len(want) - 1]
            yield list(dict.fromkeys([first[1], last[1]])), first[2].start, last[2].end


def fuse(rankings: list[list[Hit]]) -> list[Hit]:
    """Reciprocal rank fusion of several ranked lists of moments (`one_per_moment`): a moment's score
    is the sum over lists of 1 / (60 + its rank there), and it is shown by its first hit seen."""
    moment = moments({h.passage_id: h for ranking in rankings for h in ranking}.values())
    scores: dict[str, float] = {}
    first: dict[str, Hit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(one_per_moment(ranking, moment), 1):
            key = moment[hit.passage_id]
            scores[key] = scores.get(key, 0.0) + 1.0 / (RRF_K + rank)
            first.setdefault(key, hit)
    order = sorted(scores, key=scores.get, reverse=True)
    return [replace(first[key], score=scores[key]) for key in order]


def moments(hits: Iterable[Hit]) -> dict[str, str]:
    """Passage id -> the id of the moment it renders. A passage of spoken words is a moment of its
    own; an English rendering belongs to the spoken passage of its recording among `hits` that it
    overlaps most, if they share at least half of the shorter one's time (renderings are segmented
    apart from the speech, so their bounds differ by a few tenths of a second); else to itself."""
    hits = list(hits)
    spoken = [h for h in hits if not h.translated]
    out = {}
    for h in hits:
        out[h.passage_id] = h.passage_id
        if not h.translated:
            continue
        shared, best = max(((min(h.end, k.end) - max(h.start, k.start), k) for k in spoken
                            if k.file_hash == h.file_hash), key=lambda x: x[0], default=(0.0, None))
        if best is not None and shared >= 0.5 * min(h.end - h.start, best.end - best.start):
            out[h.passage_id] = best.passage_id
    return out


def one_per_moment(hits: list[Hit], moment: dict[str, str] | None = None) -> list[Hit]:
    """The hits in order, less those whose moment (`moments`) an earlier hit already shows."""
    moment = moment if moment is not None else moments(hits)
    seen: set[str] = set()
    kept = []
    for h in hits:
        if moment[h.passage_id] not in seen:
            seen.add(moment[h.passage_id])
            kept.append(h)
    return kept


def in_phrase_order(query: str, hits: list[Hit]) -> list[Hit]:
    """The hits holding a run of the query's words (lexical.phrase_length), longest run first, then in
    their given order; hits with no such run are left out."""
    want = lexical.tokens(query)
    runs = [(lexical.phrase_length(want, lexical.tokens(h.text)), i) for i, h in enumerate(hits)]
    return [hits[i] for n, i in sorted((-n, i) for n, i in runs if n > 0)]


def _dense(library: Library, vector, k: int, scope: Scope) -> list[Hit]:
    where, where_document = scope.chroma()
    return library.index.query(vector, k, where, where_document, scope.admits)


def _lexical(library: Library, query: str, k: int, scope: Scope) -> list[Hit]:
    return lexical.query(library.db, query, k, scope.hashes, scope.language, scope.speaker)
