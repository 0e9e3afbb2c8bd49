"""Stage 6: find the passages that answer a query.

Three modes: `dense` (embedding similarity in Chroma), `lexical` (BM25 over the same passages, SQLite
FTS5) and `hybrid` (the default): both lists fused by reciprocal rank fusion, which needs no score
calibration between the two (Cormack et al., 2009: score = sum of 1 / (60 + rank)).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from . import lexical
from .embed import Embedder
from .errors import ConfigError
from .records import Hit
from .store import Library

MODES = ("hybrid", "dense", "lexical")
RRF_K = 60  # the constant of reciprocal rank fusion; 60 is the value from the paper, rarely worth tuning
POOL = 50  # candidates taken from each list before fusion


@dataclass(frozen=True)
class SearchOptions:
    k: int = 10  # hits returned
    mode: str = "hybrid"  # one of MODES
    file: str | None = None  # only this recording (file name as ingested)
    language: str | None = None  # only passages in this language


def search(library: Library, embedder: Embedder, query: str, options: SearchOptions = SearchOptions()) -> list[Hit]:
    """The passages most relevant to the query, best first."""
    if options.mode not in MODES:
        raise ConfigError(f"unknown search mode {options.mode!r}; choose one of: {', '.join(MODES)}")
    query = query.strip()
    if not query:
        raise ConfigError("empty query: say what to look for")
    if options.mode == "dense":
        return _dense(library, embedder, query, options.k, options)
    if options.mode == "lexical":
        return lexical.query(library.db, query, options.k, options.file, options.language)
    pool = max(POOL, options.k)
    return fuse([_dense(library, embedder, query, pool, options),
                 lexical.query(library.db, query, pool, options.file, options.language)])[:options.k]


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
    hits: list[Hit] = []
    for (file_hash,) in rows:
        t = library.transcript(file_hash)
        if options.file and t.file_name != options.file:
            continue
        for seg_list, start, end in _occurrences(t, want, options.language):
            text = " ".join(s.text for s in seg_list)
            hits.append(Hit(passage_id=f"{file_hash[:16]}@{start:.2f}", file_hash=file_hash, file=t.file_name,
                            start=start, end=end, text=text, score=1.0))
    return sorted(hits, key=lambda h: (h.file, h.start))


def _occurrences(transcript, want: list[str], language: str | None):
    """(segments, start, end) of each run of words whose tokens equal `want`."""
    segs = [s for s in transcript.segments if s.flag is None and (not language or s.language == language)]
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


def _dense(library: Library, embedder: Embedder, query: str, k: int, options: SearchOptions) -> list[Hit]:
    return library.index.query(embedder.embed([query])[0], k, _where(options))


def _where(options: SearchOptions) -> dict | None:
    clauses = []
    if options.file:
        clauses.append({"file": options.file})
    if options.language:
        clauses.append({"language": options.language})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}
