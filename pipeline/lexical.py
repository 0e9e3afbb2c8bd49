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

import sqlite3

from .records import Hit, Passage
from .text import STOPWORDS, lone_letter, runs, words

COLUMNS = ("tokens", "text", "passage_id", "file_hash", "file", "start", "end", "language")
SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS passages_fts USING fts5(
    tokens, text UNINDEXED, passage_id UNINDEXED, file_hash UNINDEXED, file UNINDEXED, start UNINDEXED,
    end UNINDEXED, language UNINDEXED, tokenize = 'unicode61 remove_diacritics 2');
"""


# How text.words cuts tokens; an index cut another way (or over the raw text, before there was a
# tokens column) is rebuilt when its library is opened. 2: Chinese and Japanese cut into words, simplified.
TOKENS = "2"


def migrate(db: sqlite3.Connection) -> None:
    """Rebuild a lexical index whose tokens were cut otherwise (TOKENS), in one transaction: its rows
    are kept, and their tokens cut as this version cuts them. Needs the catalog's meta table."""
    row = db.execute("SELECT value FROM meta WHERE key = 'lexical_tokens'").fetchone()
    if row is not None and row[0] == TOKENS:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'lexical_tokens'").fetchone()
        if row is not None and row[0] == TOKENS:  # another process rebuilt it while this one waited
            db.execute("COMMIT")
            return
        rows = db.execute(f"SELECT {', '.join(COLUMNS[1:])} FROM passages_fts").fetchall()
        db.execute("DROP TABLE passages_fts")
        db.execute(SCHEMA)
        _insert(db, [tuple(r) for r in rows])
        db.execute("INSERT OR REPLACE INTO meta VALUES ('lexical_tokens', ?)", (TOKENS,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def tokens(text: str) -> list[str]:
    """Case- and accent-folded word tokens (see text.words)."""
    return words(text)


def match_expression(query: str) -> str | None:
    """An FTS5 MATCH expression: any of the query's content words (each quoted, so no syntax leaks);
    the words of an unspaced Chinese or Japanese run make one phrase."""
    terms = [" ".join(run) for run in runs(query)]
    wanted = [t for t in terms if t not in STOPWORDS] or terms
    return " OR ".join(f'"{t}"' for t in dict.fromkeys(wanted)) or None


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


def replace_file(db: sqlite3.Connection, file_hash: str, passages: list[Passage]) -> None:
    """Make the lexical index hold exactly these passages for one recording (call inside a transaction)."""
    db.execute("DELETE FROM passages_fts WHERE file_hash = ?", (file_hash,))
    _insert(db, [(p.text, p.id, p.file_hash, p.file_name, p.start, p.end, p.language) for p in passages])


def _insert(db: sqlite3.Connection, rows: list[tuple]) -> None:
    """Index rows of (text, passage_id, file_hash, file, start, end, language) with their tokens."""
    db.executemany(f"INSERT INTO passages_fts ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                   [(" ".join(tokens(r[0])), *r) for r in rows])


def query(db: sqlite3.Connection, text: str, k: int, hashes: list[str] | None = None,
          language: str | None = None, speaker: str | None = None) -> list[Hit]:
    """The k passages with the best BM25 score for the query's words; score = -bm25 (higher is better).

    `hashes` limits the search to those recordings, `speaker` to passages with a turn of that speaker.
    """
    expr = match_expression(text)
    if expr is None:
        return []
    sql = ("SELECT passage_id, file_hash, file, start, end, text, -bm25(passages_fts) AS score "
           "FROM passages_fts WHERE passages_fts MATCH ?")
    args: list = [expr]
    if hashes is not None:
        sql += f" AND file_hash IN ({','.join('?' * len(hashes))})"
        args.extend(hashes)
    if speaker:
        sql += " AND ('\n' || text) LIKE ?"
        args.append(f"%\n{speaker}: %")
    if language:
        sql += " AND language = ?"
        args.append(language)
    rows = db.execute(sql + " ORDER BY bm25(passages_fts) LIMIT ?", (*args, k)).fetchall()
    # Translated passages have ids "<hash>:t<n>" (chunk.passages).
    return [Hit(passage_id=r[0], file_hash=r[1], file=r[2], start=float(r[3]), end=float(r[4]), text=r[5],
                score=float(r[6]), translated=":t" in r[0]) for r in rows]
