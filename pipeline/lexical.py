"""The lexical index: SQLite FTS5 (BM25) over passage text, inside the library's catalog database.

Dense search misses names, numbers and exact wording; BM25 finds them. FTS5 is SQLite's own maintained
full-text engine, so the lexical index lives in catalog.sqlite. Both indexes are replaced together for a
recording before its catalog row says "indexed" (store.Library.replace_passages), so an interrupted
ingest re-indexes both and they never drift apart.
The index holds each passage's tokens as text.words cuts them (case- and accent-folded, Chinese and
Japanese cut into words), separated by spaces, beside the passage text it shows: SQLite's unicode61
tokenizer would take a whole unspaced Chinese or Japanese sentence for one word. A query, a phrase
and a cited sentence are cut by the same function, so they meet the index's tokens exactly.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import replace

from .records import Hit, Passage, Segment
from .text import STOPWORDS, lone_letter, runs, words

COLUMNS = ("passage_id", "file_hash", "file", "start", "end", "language", "text", "tokens", "words")
# Passages in a table of their own, indexed by recording, and FTS5 over their tokens with that table as
# its content (an "external content" index: the text is stored once). Replacing or deleting one
# recording's passages finds their rows by the file_hash index, where an FTS5 column can only be
# scanned: in a library of a million passages that scan cost more than the rest of an ingest.
SCHEMA = """
CREATE TABLE IF NOT EXISTS passages (
    rowid INTEGER PRIMARY KEY, passage_id TEXT NOT NULL, file_hash TEXT NOT NULL, file TEXT NOT NULL,
    start REAL NOT NULL, end REAL NOT NULL, language TEXT, text TEXT NOT NULL, tokens TEXT NOT NULL,
    words TEXT);  -- the spoken words' tokens with their times, by segment (`spoken`), or NULL
CREATE INDEX IF NOT EXISTS passages_file_hash ON passages(file_hash);
CREATE VIRTUAL TABLE IF NOT EXISTS passages_fts USING fts5(
    tokens, content = 'passages', content_rowid = 'rowid', tokenize = 'unicode61 remove_diacritics 2');
"""


# How text.words cuts tokens and how the index is laid out; an index made otherwise (cut another way,
# over the raw text before there was a tokens column, or inside FTS5 before the passages table) is
# rebuilt when its library is opened. 2: Chinese and Japanese cut into words, simplified. 3: the
# passages table. 4: with their words' times.
TOKENS = "4"


def migrate(db: sqlite3.Connection) -> None:
    """Rebuild a lexical index made otherwise (TOKENS), in one transaction: its passages are kept,
    and their tokens cut as this version cuts them. Needs the catalog's meta table."""
    row = db.execute("SELECT value FROM meta WHERE key = 'lexical_tokens'").fetchone()
    if row is not None and row[0] == TOKENS:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'lexical_tokens'").fetchone()
        if row is not None and row[0] == TOKENS:  # another process rebuilt it while this one waited
            db.execute("COMMIT")
            return
        rows = _kept_rows(db)
        db.execute("DROP TABLE IF EXISTS passages_fts")
        db.execute("DROP TABLE IF EXISTS passages")
        for statement in filter(str.strip, SCHEMA.split(";")):
            db.execute(statement)
        _insert(db, rows)
        db.execute("INSERT INTO passages_fts (passages_fts) VALUES ('rebuild')")
        db.execute("INSERT OR REPLACE INTO meta VALUES ('lexical_tokens', ?)", (TOKENS,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _kept_rows(db: sqlite3.Connection) -> list[tuple]:
    """(passage_id, file_hash, file, start, end, language, text, words) of every indexed passage: from
    the passages table, or from an index that kept them inside FTS5 (before TOKENS 3: words unknown,
    so exact phrase search reads those transcripts until `earmark reindex`)."""
    made = db.execute("SELECT sql FROM sqlite_master WHERE name = 'passages_fts'").fetchone()
    if made is not None and "content" not in made[0]:
        return [(*r, None) for r in db.execute(
            "SELECT passage_id, file_hash, file, start, end, language, text FROM passages_fts").fetchall()]
    have = {r[1] for r in db.execute("PRAGMA table_info(passages)")}
    words = "words" if "words" in have else "NULL"
    return [tuple(r) for r in db.execute(
        f"SELECT passage_id, file_hash, file, start, end, language, text, {words} FROM passages").fetchall()]


def tokens(text: str) -> list[str]:
    """Case- and accent-folded word tokens (see text.words)."""
    return words(text)


def query_terms(query: str) -> list[str]:
    """The query's content words as FTS5 phrases (a stopword-only query keeps its words); the words of
    an unspaced Chinese or Japanese run make one phrase."""
    terms = [" ".join(run) for run in runs(query)]
    return list(dict.fromkeys([t for t in terms if t not in STOPWORDS] or terms))


def _any(terms: list[str]) -> str:
    """Any of the terms, each quoted (so no FTS5 syntax leaks from a query)."""
    return " OR ".join(f'"{t}"' for t in terms)


def phrase_length(query: list[str], passage: list[str]) -> int:
    """Content words in the longest run of the query's tokens that the passage holds in the same order.

    A run counts from two tokens with at least one content word (not a stopword, not a lone letter:
    "world s fresh" counts two, "of the" nothing). BM25 scores words one by one, so this is the evidence of wording it cannot see.
    """
    at: dict[str, list[int]] = {}
    for j, tok in enumerate(passage):
        at.setdefault(tok, []).append(j)
    best = 0
    for i, tok in enumerate(query):
        for j in at.get(tok, ()):
            n = 0
            while i + n < len(query) and j + n < len(passage) and query[i + n] == passage[j + n]:
                n += 1
            if n >= 2:
                best = max(best, content_count(query[i:i + n]))
    return best


def content_count(tokens: list[str]) -> int:
    """How many of the tokens are content words (not a stopword, not a lone letter)."""
    return sum(not lone_letter(t) and t not in STOPWORDS for t in tokens)


def spoken(passage: Passage, segments: dict[int, Segment]) -> str | None:
    """The passage's words as exact phrase search reads them: JSON, one [text, tokens, times] per segment,
    tokens as `tokens` cuts each word (space-separated), times the start and end of each token's word in
    centiseconds. An FTS5 phrase query finds the passages; these times then say where in them the phrase
    is, with no transcript read. None for an English rendering, or segments not given."""
    if passage.translated or not all(i in segments for i in passage.segment_ids):
        return None
    rows = []
    for i in passage.segment_ids:
        seg, toks, times = segments[i], [], []
        for w in seg.words:
            for tok in tokens(w.text):
                toks.append(tok)
                times += (round(w.start * 100), round(w.end * 100))
        rows.append([seg.text, " ".join(toks), " ".join(map(str, times))])
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":"))


def replace_file(db: sqlite3.Connection, file_hash: str, passages: list[Passage],
                 segments: Iterable[Segment] = ()) -> None:
    """Make the lexical index hold exactly these passages for one recording (call inside a transaction);
    with the recording's segments, their words are kept for exact phrase search (`spoken`)."""
    # An external-content index is told what each deleted row held, so it can take its tokens out.
    db.execute("INSERT INTO passages_fts (passages_fts, rowid, tokens) "
               "SELECT 'delete', rowid, tokens FROM passages WHERE file_hash = ?", (file_hash,))
    db.execute("DELETE FROM passages WHERE file_hash = ?", (file_hash,))
    by_id = {seg.id: seg for seg in segments}
    _insert(db, [(p.id, p.file_hash, p.file_name, p.start, p.end, p.language, p.text, spoken(p, by_id))
                 for p in passages])
    db.execute("INSERT INTO passages_fts (rowid, tokens) SELECT rowid, tokens FROM passages WHERE file_hash = ?",
               (file_hash,))


def _insert(db: sqlite3.Connection, rows: list[tuple]) -> None:
    """Store rows of (passage_id, file_hash, file, start, end, language, text, words) with their tokens
    (the caller then indexes them)."""
    db.executemany(f"INSERT INTO passages ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                   [(*r[:7], " ".join(tokens(r[6])), r[7]) for r in rows])


def phrase_passages(db: sqlite3.Connection, want: list[str], hashes: list[str] | None = None,
                    language: str | None = None) -> list[tuple[str, str, float, float, str | None]]:
    """(file_hash, file, start, end, words) of the spoken passages holding these tokens in a row (an
    FTS5 phrase); words as `spoken` made them, or None."""
    sql = ("SELECT p.file_hash, p.file, p.start, p.end, p.words FROM passages_fts "
           "JOIN passages p ON p.rowid = passages_fts.rowid "
           "WHERE passages_fts MATCH ? AND p.passage_id NOT LIKE '%:t%'")
    args: list = ['"' + " ".join(want) + '"']
    if hashes is not None:
        sql += f" AND p.file_hash IN ({','.join('?' * len(hashes))})"
        args.extend(hashes)
    if language:
        sql += " AND p.language = ?"
        args.append(language)
    return [(r[0], r[1], float(r[2]), float(r[3]), r[4]) for r in db.execute(sql, args).fetchall()]


def occurrences(words: str, want: list[str]) -> Iterator[tuple[str, float, float]]:
    """(text of the segments it is in, start, end) of each run of `want` in a passage's words (`spoken`)."""
    flat = []
    for n, (text, toks, times) in enumerate(json.loads(words)):
        t = times.split()
        flat += [(tok, n, text, int(t[2 * i]) / 100, int(t[2 * i + 1]) / 100) for i, tok in enumerate(toks.split())]
    for i in run_starts([f[0] for f in flat], want):
        first, last = flat[i], flat[i + len(want) - 1]
        yield " ".join(dict.fromkeys([first[2], last[2]])), first[3], last[4]


def run_starts(have: list[str], want: list[str]) -> Iterator[int]:
    """Where `want` occurs in `have`, token for token (exact phrase search, from the index or a transcript)."""
    k = len(want)
    for i in range(len(have) - k + 1):
        if have[i:i + k] == want:
            yield i


# Common words (after Lucene's and Elasticsearch's "common terms" query). BM25 scores every passage that
# holds any word of the query, and a word in a tenth of a million passages ("meeting", "said") had FTS5
# score 100,000 rows for a word whose weight (IDF) is near nothing: 656 of a hybrid search's 679 ms p95
# at 1M passages (eval/results/scale). A word in more than COMMON_SHARE of the passages (and at least
# COMMON_MIN) is common. The candidates are the RESCORED * k passages that score best on the query's
# other words; each common word's BM25 term is then added to their scores (`_plus_common`, FTS5's own
# formula and statistics), so they rank as a search for every word would rank them. A query of common
# words only takes the passages holding all of them, or, if fewer than k, any of them as before.
COMMON_SHARE = 0.01
COMMON_MIN = 1000
RESCORED = 4
K1, B = 1.2, 0.75  # FTS5's bm25() constants


def query(db: sqlite3.Connection, text: str, k: int, hashes: list[str] | None = None,
          language: str | None = None, speaker: str | None = None) -> list[Hit]:
    """The k passages with the best BM25 score for the query's words; score = -bm25 (higher is better).

    `hashes` limits the search to those recordings, `speaker` to passages with a turn of that speaker.
    """
    terms = query_terms(text)
    if not terms:
        return []
    rows, tokens = _stats(db)
    common = _common(db, terms, rows)
    rare = [t for t in terms if t not in common]
    found = lambda expr, n: _query(db, expr, n, hashes, language, speaker)  # noqa: E731
    if not common:
        return [h for h, _ in found(_any(terms), k)]
    if not rare:
        hits = found(" AND ".join(f'"{t}"' for t in terms), k)
        return [h for h, _ in (hits if len(hits) >= k else found(_any(terms), k))]
    scored = _plus_common(db, found(_any(rare), RESCORED * k), common, rows, tokens)
    return sorted(scored, key=lambda h: -h.score)[:k]


def _stats(db: sqlite3.Connection) -> tuple[int, int]:
    """(passages, tokens) as FTS5 counts them for bm25(): its "averages" record (a varint each)."""
    row = db.execute("SELECT block FROM passages_fts_data WHERE id = 1").fetchone()
    values, i, blob = [], 0, row[0] if row else b""
    while i < len(blob) and len(values) < 2:  # SQLite varints: 7 bits a byte, high bit "more"; 9th byte 8 bits
        v = 0
        for j in range(9):
            c = blob[i]
            i += 1
            if j == 8:
                v = (v << 8) | c
                break
            v = (v << 7) | (c & 0x7F)
            if not c & 0x80:
                break
        values.append(v)
    return (values + [0, 0])[0], (values + [0, 0])[1]


def _common(db: sqlite3.Connection, terms: list[str], rows: int) -> list[str]:
    """The query's common words (see COMMON_SHARE); telling one costs at most `cutoff` index entries."""
    cutoff = max(COMMON_MIN, int(COMMON_SHARE * rows))
    if rows <= cutoff or len(terms) < 2:
        return []
    return [t for t in terms if db.execute(
        "SELECT count(*) FROM (SELECT rowid FROM passages_fts WHERE passages_fts MATCH ? LIMIT ?)",
        (f'"{t}"', cutoff + 1)).fetchone()[0] > cutoff]


def _plus_common(db: sqlite3.Connection, found: list[tuple[Hit, str]], common: list[str], rows: int,
                 tokens: int) -> list[Hit]:
    """The hits with each common word's BM25 term added to their scores, as FTS5 computes it: IDF
    log((N - n + 0.5) / (n + 0.5)), at least 1e-6, times tf (k1 + 1) / (tf + k1 (1 - b + b D / avgdl))."""
    avgdl = tokens / rows if rows else 1.0
    out = []
    idf = {}
    for t in common:
        n = db.execute("SELECT count(*) FROM passages_fts WHERE passages_fts MATCH ?", (f'"{t}"',)).fetchone()[0]
        idf[t] = max(math.log((rows - n + 0.5) / (n + 0.5)), 1e-6)
    for hit, toks in found:
        have = toks.split()
        norm = K1 * (1 - B + B * len(have) / avgdl)
        score = hit.score
        for t in common:
            tf = sum(1 for _ in run_starts(have, t.split()))
            score += idf[t] * tf * (K1 + 1) / (tf + norm) if tf else 0.0
        out.append(replace(hit, score=score))
    return out


def _query(db: sqlite3.Connection, expr: str, k: int, hashes: list[str] | None, language: str | None,
           speaker: str | None) -> list[tuple[Hit, str]]:
    """(hit, its tokens) of the k passages with the best BM25 score for an FTS5 expression."""
    columns = "p.passage_id, p.file_hash, p.file, p.start, p.end, p.text, p.tokens"
    filters, args = [], [expr]
    if hashes is not None:
        filters.append(f"p.file_hash IN ({','.join('?' * len(hashes))})")
        args.extend(hashes)
    if speaker:
        filters.append("('\n' || p.text) LIKE ?")
        args.append(f"%\n{speaker}: %")
    if language:
        filters.append("p.language = ?")
        args.append(language)
    if filters:
        sql = (f"SELECT {columns}, -bm25(passages_fts) FROM passages_fts JOIN passages p ON p.rowid = passages_fts.rowid "
               f"WHERE passages_fts MATCH ? AND {' AND '.join(filters)} ORDER BY bm25(passages_fts) LIMIT ?")
    else:  # the k best first, then their rows: no join for the passages that are not kept
        sql = (f"SELECT {columns}, -f.score FROM (SELECT rowid, bm25(passages_fts) AS score FROM passages_fts "
               f"WHERE passages_fts MATCH ? ORDER BY score LIMIT ?) f JOIN passages p ON p.rowid = f.rowid ORDER BY f.score")
    rows = db.execute(sql, (*args, k)).fetchall()
    # Translated passages have ids "<hash>:t<n>" (chunk.passages).
    return [(Hit(passage_id=r[0], file_hash=r[1], file=r[2], start=float(r[3]), end=float(r[4]), text=r[5],
                 score=float(r[7]), translated=":t" in r[0]), r[6]) for r in rows]
