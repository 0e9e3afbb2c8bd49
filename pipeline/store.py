"""Stage 5: the library directory, the system of record for everything ingested.

    LIBRARY/
      catalog.sqlite       recordings: hash, name, path, size, duration, status, models (WAL mode)
      transcripts/H.json   one transcript per recording hash (the system of record)
      chroma/              the passage vectors (vectors.PassageIndex); rebuildable from the transcripts
    The lexical (FTS5) index of the same passages lives in catalog.sqlite (lexical.py).

Every write is atomic (temp file + rename, or one SQLite transaction), so an interrupted ingest leaves
nothing half-written and simply resumes. Writers hold the library's writer lock (`Library.writing`,
lock.py); taking it first clears what a writer killed mid-write can leave: temp files of
`write_atomic` and an audit head one entry behind the log (audit.repair_head).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import lexical, trace
from .audit import repair_head
from .atomic import write_atomic
from .config import EmbedOptions
from .errors import LibraryError
from .records import Passage, Transcript, now

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS recordings (
    sha256 TEXT PRIMARY KEY,
    file_name TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    duration REAL,
    status TEXT NOT NULL,          -- transcribed | indexed
    languages TEXT,                -- JSON list, in order of appearance
    transcribe_model TEXT,         -- JSON: model, backend, version, settings
    embed_model TEXT,
    passages INTEGER DEFAULT 0,
    ingested_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    recorded_at TEXT,              -- when the recording was made, ISO: from its metadata, else its mtime
    recorded_from TEXT             -- which: "metadata: <tag>" or "file modification time"
);
CREATE INDEX IF NOT EXISTS recordings_name ON recordings(file_name);
-- English renderings of foreign sentences by the answering LLM (translation.py), made when asked for.
CREATE TABLE IF NOT EXISTS renderings (
    file_hash TEXT NOT NULL,
    model TEXT NOT NULL,           -- the LLM backend and model that wrote it
    source TEXT NOT NULL,          -- the transcribed sentence
    english TEXT NOT NULL,
    PRIMARY KEY (file_hash, model, source)
);
"""

# Parsed transcripts a library handle keeps (Library.transcript): an hour's is ~10 MB of Python objects,
# and a question's hits rarely come from more than a few dozen recordings.
TRANSCRIPTS = 64


@dataclass(frozen=True)
class Recording:
    sha256: str
    file_name: str
    path: str
    size: int
    duration: float | None
    status: str
    languages: list[str]
    transcribe_model: dict
    embed_model: str | None
    passages: int
    ingested_at: str
    recorded_at: str | None = None  # when it was made (ISO, as precise as known)
    recorded_from: str | None = None  # how that is known: "metadata: <tag>" or "file modification time"


class Library:
    """A library directory: catalog, transcripts and the passage index, opened for one embedder.

    With no embedder named, a library keeps the one it was built with (a new one takes the default).
    """

    def __init__(self, root: Path, embed_model: str | None = None, chroma_url: str | None = None):
        self.root = Path(root).expanduser()
        # Passage vectors on a Chroma server (vectors.py), else embedded in LIBRARY/chroma.
        self.chroma_url = (os.environ.get("EARMARK_CHROMA_URL", "") if chroma_url is None else chroma_url).strip() or None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / "transcripts").mkdir(exist_ok=True)
            self.db = sqlite3.connect(self.root / "catalog.sqlite", timeout=30, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(SCHEMA)
            self.db.executescript(lexical.SCHEMA)
            self._migrate()
            self.embed_model = self._check_embed_model(embed_model)
        except (OSError, sqlite3.Error) as e:
            raise LibraryError(_unusable(self.root, e)) from e
        self._index = None
        # Parsed transcripts by hash, with the (mtime, size) they were read at, the TRANSCRIPTS most
        # recently read: one question reads the same transcript once per hit, and an hour's transcript
        # is megabytes of JSON; a server over thousands of hours must not keep them all.
        self._transcripts: OrderedDict[str, tuple[tuple[int, int], Transcript]] = OrderedDict()
        self._lock = None

    @contextmanager
    def writing(self, cancel: threading.Event | None = None):
        """Hold the library's writer lock (waiting, and saying so once, while another process holds it);
        re-entrant. Taking it repairs what a killed writer left (see the module docstring)."""
        from .lock import WriteLock

        if self._lock is None:
            self._lock = WriteLock(self.root)
        self._lock.cancel = cancel
        if self._lock.acquire():
            try:
                self._recover()
            except BaseException:
                self._lock.release()
                raise
        try:
            yield self
        finally:
            self._lock.release()

    def _recover(self) -> None:
        """Clear what a writer killed mid-write leaves; only called with the writer lock held, so no
        other writer's temp file can be among them."""
        for folder in (self.root, self.root / "transcripts", self.root / "redactions"):
            for tmp in folder.glob(".*.tmp"):
                log.info("removing %s, left by an interrupted write", tmp)
                tmp.unlink(missing_ok=True)
        repair_head(self.root)

    def _migrate(self) -> None:
        """Bring a catalog made by an older earmark up to this schema (columns are only ever added)."""
        have = {r["name"] for r in self.db.execute("PRAGMA table_info(recordings)")}
        for column in ("recorded_at", "recorded_from"):
            if column not in have:
                self.db.execute(f"ALTER TABLE recordings ADD COLUMN {column} TEXT")
        lexical.migrate(self.db)

    def select(self, pattern: str | None = None, since: str | None = None, until: str | None = None) -> list[str]:
        """Hashes of recordings whose file name matches a glob and whose recording date is in range."""
        import fnmatch

        rows = self.db.execute("SELECT sha256, file_name, recorded_at FROM recordings").fetchall()
        return [r["sha256"] for r in rows
                if (not pattern or fnmatch.fnmatch(r["file_name"], pattern))
                and (not since or (r["recorded_at"] or "") >= since)
                and (not until or (r["recorded_at"] or "9999") <= until + "\uffff")]

    def _check_embed_model(self, name: str | None) -> str:
        row = self.db.execute("SELECT value FROM meta WHERE key='embed_model'").fetchone()
        if name is None:
            if row is not None:
                return row["value"]
            name = EmbedOptions().model
        if row is None:  # a new library; another process opening it this moment may name it first
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('embed_model', ?)", (name,))
            row = self.db.execute("SELECT value FROM meta WHERE key='embed_model'").fetchone()
        if row["value"] != name:
            raise LibraryError(
                f"library {self.root} was indexed with embedder {row['value']!r}, not {name!r}: "
                f"use --embed-model {row['value']} (or EARMARK_EMBED_MODEL), or start a new library")
        return name

    @property
    def index(self):
        """The passage index (opened on first use: Chroma is slow to import), where the library keeps it:
        embedded, or on the Chroma server it was built on (vectors.py). Opening it elsewhere is refused,
        since its vectors are not there: `earmark reindex` builds them there (`move_index`)."""
        if self._index is None:
            kept = self._meta("vector_store")
            if kept is None:  # a new library takes the place it is opened with; an older one had only one
                kept = "embedded" if (self.root / "chroma").exists() else self.vector_store
                self.db.execute("INSERT OR IGNORE INTO meta VALUES ('vector_store', ?)", (kept,))
            if kept != self.vector_store:
                raise LibraryError(
                    f"library {self.root} keeps its passage vectors {_place(kept)}, not {_place(self.vector_store)}: "
                    "run `earmark reindex` to build them there from the transcripts, or "
                    + ("unset EARMARK_CHROMA_URL" if kept == "embedded" else f"set EARMARK_CHROMA_URL={kept}"))
            self._index = self._open_index()
        return self._index

    @property
    def vector_store(self) -> str:
        """Where this handle keeps passage vectors: "embedded", or the Chroma server's URL."""
        return self.chroma_url or "embedded"

    def _open_index(self):
        from .vectors import PassageIndex

        if not self.chroma_url:
            return PassageIndex(self.root / "chroma", self.embed_model)
        self.db.execute("INSERT OR IGNORE INTO meta VALUES ('library_id', ?)", (os.urandom(8).hex(),))
        return PassageIndex(self.root / "chroma", self.embed_model, self.chroma_url, f"earmark-{self._meta('library_id')}")

    def index_elsewhere(self) -> bool:
        """True if the library's vectors are kept somewhere other than where this handle keeps them."""
        return self._meta("vector_store") not in (None, self.vector_store)

    def move_index(self):
        """The passage index where this handle keeps vectors, emptied, and recorded as the library's
        (reindex, with the writer lock held, then fills it from the transcripts)."""
        self._index = self._open_index()
        self._index.clear()
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('vector_store', ?)", (self.vector_store,))
        return self._index

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row["value"] if row else None

    def replace_passages(self, file_hash: str, passages: list[Passage], vectors, name: str = "",
                         segments=()) -> None:
        """Make both indexes (vectors and lexical) hold exactly these passages for one recording.

        Not atomic across the two: a caller marks the recording indexed only after both (ingest), so
        one interrupted between them is replaced whole on the next run. The recording's segments give
        the lexical index its words' times (exact phrase search)."""
        with trace.stage("store-chroma", name or file_hash):
            self.index.replace_file(file_hash, passages, vectors, name or file_hash)
        with trace.stage("store-fts", name or file_hash), self.db:
            self.db.execute("BEGIN")
            lexical.replace_file(self.db, file_hash, passages, segments)
            trace.point("store-fts", name or file_hash)  # inside the transaction: a kill here rolls it back

    # --- transcripts -------------------------------------------------------------------------
    def transcript_path(self, sha256: str) -> Path:
        return self.root / "transcripts" / f"{sha256}.json"

    def save_transcript(self, t: Transcript) -> None:
        """Store a transcript; an older one for the same recording is kept as a version beside it."""
        path = self.transcript_path(t.file_hash)
        if path.exists():
            old = json.loads(path.read_text())
            stamp = old.get("created", "old").replace(":", "")
            version, n = path.with_name(f"{t.file_hash}.{stamp}.json"), 1
            while version.exists():  # two versions made in the same second: never overwrite one
                version, n = path.with_name(f"{t.file_hash}.{stamp}-{n}.json"), n + 1
            os.replace(path, version)
        write_atomic(path, json.dumps(t.to_dict(), ensure_ascii=False, indent=1).encode())

    def transcript(self, sha256: str) -> Transcript:
        """The current transcript of a recording."""
        path = self.transcript_path(sha256)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise LibraryError(f"no transcript for {sha256[:12]} in {self.root}") from None
        stamp = (st.st_mtime_ns, st.st_size)  # writes are atomic renames, so a new file has a new stamp
        cached = self._transcripts.get(sha256)
        if cached is None or cached[0] != stamp:
            try:
                cached = (stamp, Transcript.from_dict(json.loads(path.read_text())))
            except (ValueError, KeyError, TypeError) as e:  # edited by hand, or not earmark's
                raise LibraryError(f"the transcript of {sha256[:12]} ({path}) is damaged ({type(e).__name__}: "
                                   f"{str(e)[:120]}): restore it from an earlier version beside it "
                                   f"({sha256[:12]}….*.json), or delete the recording and ingest it again") from e
            self._transcripts[sha256] = cached
            while len(self._transcripts) > TRANSCRIPTS:
                self._transcripts.popitem(last=False)
        if sha256 in self._transcripts:  # (another thread may have just let it go)
            self._transcripts.move_to_end(sha256)
        return cached[1]

    # --- catalog -----------------------------------------------------------------------------
    def recording(self, sha256: str) -> Recording | None:
        row = self.db.execute("SELECT * FROM recordings WHERE sha256=?", (sha256,)).fetchone()
        return _recording(row) if row else None

    def recordings(self) -> list[Recording]:
        rows = self.db.execute("SELECT * FROM recordings ORDER BY file_name").fetchall()
        return [_recording(r) for r in rows]

    def find(self, name_or_hash: str) -> Recording:
        """A recording by file name, path or hash prefix; an error says what is there otherwise."""
        key = Path(name_or_hash).name
        rows = self.db.execute(
            "SELECT * FROM recordings WHERE file_name=? OR sha256 LIKE ? ORDER BY ingested_at",
            (key, f"{name_or_hash}%") if len(name_or_hash) >= 8 else (key, "\0")).fetchall()
        if not rows:
            raise LibraryError(f"{name_or_hash!r} is not in the library {self.root}: "
                               "`earmark status` lists what is")
        return _recording(rows[0])

    def upsert_recording(self, sha256: str, *, file_name: str, path: str, size: int,
                         duration: float, status: str, languages: list[str],
                         transcribe_model: dict, passages: int = 0, recorded_at: str | None = None,
                         recorded_from: str | None = None) -> None:
        """Insert or update a recording's catalog row in one transaction."""
        ts = now()
        self.db.execute(
            """INSERT INTO recordings (sha256, file_name, path, size, duration, status, languages,
                   transcribe_model, embed_model, passages, ingested_at, updated_at, recorded_at, recorded_from)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)
               ON CONFLICT(sha256) DO UPDATE SET status=excluded.status, duration=excluded.duration,
                   languages=excluded.languages, transcribe_model=excluded.transcribe_model,
                   embed_model=excluded.embed_model, passages=excluded.passages,
                   updated_at=excluded.updated_at,
                   recorded_at=COALESCE(excluded.recorded_at, recordings.recorded_at),
                   recorded_from=COALESCE(excluded.recorded_from, recordings.recorded_from)""",
            (sha256, file_name, path, size, duration, status, json.dumps(languages),
             json.dumps(transcribe_model), self.embed_model, passages, ts, ts, recorded_at, recorded_from))

    def move_recording(self, sha256: str, path: str) -> None:
        """The original now lives at `path` (renamed or moved); its name as ingested, which citations and
        passages carry, stays."""
        self.db.execute("UPDATE recordings SET path=?, updated_at=? WHERE sha256=?", (path, now(), sha256))

    def set_status(self, sha256: str, status: str) -> None:
        """Set a recording's status alone ("transcribed": its indexes are about to be rebuilt)."""
        self.db.execute("UPDATE recordings SET status=?, updated_at=? WHERE sha256=?", (status, now(), sha256))

    # --- English renderings (translation.py) ----------------------------------------------------
    def renderings(self, file_hash: str, model: str, sources: list[str]) -> dict[str, str]:
        """The stored English renderings of some of a recording's sentences, by source text."""
        if not sources:
            return {}
        marks = ",".join("?" * len(sources))
        rows = self.db.execute(f"SELECT source, english FROM renderings WHERE file_hash=? AND model=? "
                               f"AND source IN ({marks})", (file_hash, model, *sources)).fetchall()
        return {r["source"]: r["english"] for r in rows}

    def add_rendering(self, file_hash: str, model: str, source: str, english: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO renderings (file_hash, model, source, english) VALUES (?, ?, ?, ?)",
                        (file_hash, model, source, english))

    def durations(self) -> dict[str, float]:
        """Recording duration by file name, for checking that citations lie inside recordings."""
        return {r.file_name: r.duration or 0.0 for r in self.recordings()}

    def close(self) -> None:
        self.db.close()


def _place(store: str) -> str:
    return "embedded in the library" if store == "embedded" else f"on the Chroma server at {store}"


def _unusable(root: Path, e: Exception) -> str:
    """One line on why a library cannot be opened, and what to do."""
    text = str(e)
    if "readonly" in text or getattr(e, "errno", None) in (errno.EROFS, errno.EACCES) or not os.access(root, os.W_OK):
        return (f"library {root} is read-only ({text[:80]}): earmark keeps its catalog there and must write "
                "to it; make it writable, or copy it and use --library COPY")
    if "disk is full" in text or getattr(e, "errno", None) == errno.ENOSPC:
        return f"the disk holding library {root} is full: free some space and run the command again"
    return f"library {root} cannot be opened ({type(e).__name__}: {text[:120]}): check the folder, or use another --library"


def _recording(row: sqlite3.Row) -> Recording:
    """A catalog row as a Recording; a damaged field (a hand edit, a bad disk) reads as unknown, with a
    warning naming the row, so one bad row does not stop every command that lists the library."""
    def field(column: str, parse, default):
        try:
            return parse(row[column])
        except (ValueError, TypeError) as e:
            log.warning("catalog row %s (%s): %s is damaged (%s); read as unknown: `earmark reindex` rewrites it",
                        row["sha256"][:12], row["file_name"], column, e)
            return default

    return Recording(
        sha256=row["sha256"], file_name=row["file_name"], path=row["path"], size=field("size", int, 0),
        duration=field("duration", lambda v: None if v is None else float(v), None), status=row["status"],
        languages=field("languages", lambda v: list(json.loads(v or "[]")), []),
        transcribe_model=field("transcribe_model", lambda v: dict(json.loads(v or "{}")), {}),
        embed_model=row["embed_model"], passages=field("passages", lambda v: int(v or 0), 0),
        ingested_at=row["ingested_at"], recorded_at=row["recorded_at"], recorded_from=row["recorded_from"])
