"""Stage 6: find the passages that answer a query.

Three modes: `dense` (embedding similarity in Chroma), `lexical` (BM25 over the same passages, SQLite
FTS5) and `hybrid` (the default): both lists fused by reciprocal rank fusion, which needs no score
calibration between the two (Cormack et al., 2009: score = sum of 1 / (60 + rank)). Hybrid fuses a
third list, the lexical candidates that hold a run of the query's words in its order, longest run
first: BM25 scores words one at a time and cannot tell "the world's fresh ornament" from a passage
that has "world", "fresh" and "ornament" apart, and a quoted or remembered phrase is the strongest
evidence a question can carry (on eval/sets/real.jsonl it took exact-phrase hit@1 from 0.86 to 1.0).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from . import lexical, speakers
from .embed import Embedder
from .errors import ConfigError
from .records import Hit, during
from .rerank import rerank
from .store import Library

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


def search(library: Library, embedder: Embedder, query: str, options: SearchOptions = SearchOptions()) -> list[Hit]:
    """The passages most relevant to the query, best first."""
    if options.mode not in MODES:
        raise ConfigError(f"unknown search mode {options.mode!r}; choose one of: {', '.join(MODES)}")
    query = query.strip()
    if not query:
        raise ConfigError("empty query: say what to look for")
    scope = Scope.of(library, options)
    if scope.hashes == []:
        return []
    asked = speakers.by_order(query)
    if asked:
        hits = spoken_by(library, embedder, query, asked, options, scope)
    else:
        hits = _ranked(library, embedder, query, options, scope)
    return hits if options.rerank == "none" else rerank(options.rerank, query, hits)


def spoken_by(library: Library, embedder: Embedder, query: str, asked: speakers.SpeakerByOrder,
              options: SearchOptions, scope: Scope) -> list[Hit]:
    """The best passages in which the speaker a query names by order speaks ("what did the second
    speaker say about Chicago?": Sheila on the call, SPEAKER_2 in a diarized meeting, no one in a
    one-voice talk), searched for as "what did someone say about Chicago?": "the first speaker" says
    who spoke, not what they said, and its words would find "the first great sorrow of his life"."""
    label_of: dict[str, str | None] = {}
    kept = []
    for hit in _ranked(library, embedder, asked.naming(query), replace(options, k=max(POOL, options.k)), scope):
        segments = library.transcript(hit.file_hash).segments
        if hit.file_hash not in label_of:
            label_of[hit.file_hash] = asked.of(list(segments))
        label = label_of[hit.file_hash]
        if label and any(s.speaker == label for s in during(segments, hit.start, hit.end)):
            kept.append(hit)
    return kept[:options.k]


def _ranked(library: Library, embedder: Embedder, query: str, options: SearchOptions, scope: Scope) -> list[Hit]:
    """The passages most relevant to the query in the chosen mode, best first."""
    if options.mode == "dense":
        hits = _dense(library, embedder, query, options.k, scope)
    elif options.mode == "lexical":
        hits = _lexical(library, query, options.k, scope)
    else:
        pool = max(POOL, options.k)
        lexical_hits = _lexical(library, query, pool, scope)
        hits = fuse([_dense(library, embedder, query, pool, scope), lexical_hits,
                     in_phrase_order(query, lexical_hits)])[:options.k]
    return hits


def exact(library: Library, phrase: str, options: SearchOptions = SearchOptions()) -> list[Hit]:
    """Every occurrence of a phrase (case-, accent- and punctuation-insensitive), timed by its words.

    FTS5 narrows the search to recordings that hold the phrase; the words of their transcripts then
    give each occurrence's exact start (its first word) and end (its last word).
    """
    want = lexical.tokens(phrase)
    if not want:
        raise ConfigError("empty phrase: say what to look for")
    rows = library.db.execute(
        "SELECT DISTINCT file_hash FROM passages_fts WHERE passages_fts MATCH ?",
        ('"' + " ".join(want) + '"',)).fetchall()
    scope = Scope.of(library, options)
    hits: list[Hit] = []
    for (file_hash,) in rows:
        if scope.hashes is not None and file_hash not in scope.hashes:
            continue
        t = library.transcript(file_hash)
        for seg_list, start, end in _occurrences(t, want, scope):
            text = " ".join(s.text for s in seg_list)
            hits.append(Hit(passage_id=f"{file_hash[:16]}@{start:.2f}", file_hash=file_hash, file=t.file_name,
                            start=start, end=end, text=text, score=1.0))
    return sorted(hits, key=lambda h: (h.file, h.start))


def _occurrences(transcript, want: list[str], scope: Scope):
    """(segments, start, end) of each run of words whose tokens equal `want`."""
    segs = [s for s in transcript.segments if s.flag is None and (not scope.language or s.language == scope.language)
            and (not scope.speaker or s.speaker == scope.speaker)]
    flat = [(tok, seg, w) for seg in segs for w in seg.words for tok in lexical.tokens(w.text)]
    n = len(want)
    for i in range(len(flat) - n + 1):
        if all(flat[i + j][0] == want[j] for j in range(n)):
            first, last = flat[i], flat[i + n - 1]
            seg_list = list(dict.fromkeys([first[1], last[1]]))
            yield seg_list, first[2].start, last[2].end


def fuse(rankings: list[list[Hit]]) -> list[Hit]:
    """Reciprocal rank fusion of several ranked lists; a hit's score becomes its fused score."""
    scores: dict[str, float] = {}
    first: dict[str, Hit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, 1):
            scores[hit.passage_id] = scores.get(hit.passage_id, 0.0) + 1.0 / (RRF_K + rank)
            first.setdefault(hit.passage_id, hit)
    order = sorted(scores, key=scores.get, reverse=True)
    return [replace(first[pid], score=scores[pid]) for pid in order]


def in_phrase_order(query: str, hits: list[Hit]) -> list[Hit]:
    """The hits holding a run of the query's words (lexical.phrase_length), longest run first, then in
    their given order; hits with no such run are left out."""
    want = lexical.tokens(query)
    runs = [(lexical.phrase_length(want, lexical.tokens(h.text)), i) for i, h in enumerate(hits)]
    return [hits[i] for n, i in sorted((-n, i) for n, i in runs if n > 0)]


def _dense(library: Library, embedder: Embedder, query: str, k: int, scope: Scope) -> list[Hit]:
    where, where_document = scope.chroma()
    return library.index.query(embedder.embed_query(query), k, where, where_document)


def _lexical(library: Library, query: str, k: int, scope: Scope) -> list[Hit]:
    return lexical.query(library.db, query, k, scope.hashes, scope.language, scope.speaker)
