"""Chain of custody: originals re-hashed against the catalog, questions and deletions audit-logged.

The catalog records each original's SHA-256, size, path and ingest time; `verify_originals` re-hashes
every original where it was ingested from. What is done to the library is written to its tamper-evident
audit log (audit.py).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from . import lexical
from .audio import sha256_file
from .audit import log_event
from .config import env_switch
from .errors import CustodyError
from .store import Library, Recording

log = logging.getLogger(__name__)

QUESTIONS_KEY = "audit_questions"  # catalog meta: "1" logs every question asked
QUESTIONS_ENV = "EARMARK_AUDIT_QUESTIONS"


# --- originals -------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileCheck:
    file: str
    path: str
    status: str  # "ok" | "changed" | "missing"
    expected: str
    actual: str | None  # None when the file is missing

    def to_json(self) -> dict:
        """The `verify --json` shape of one file."""
        return asdict(self)


def check_original(rec: Recording) -> FileCheck:
    """Re-hash one original at the path it was ingested from."""
    path = Path(rec.path)
    if not rec.path or not path.is_file():
        return FileCheck(rec.file_name, rec.path, "missing", rec.sha256, None)
    actual = sha256_file(path)
    return FileCheck(rec.file_name, rec.path, "ok" if actual == rec.sha256 else "changed", rec.sha256, actual)


def verify_originals(library: Library, on_file: Callable[[FileCheck], None] | None = None) -> list[FileCheck]:
    """Re-hash every original in the library; one check per recording, in file-name order."""
    checks = []
    for rec in library.recordings():
        checks.append(check_original(rec))
        if on_file:
            on_file(checks[-1])
    return checks


def require_intact(rec: Recording) -> Path:
    """The original's path if its bytes are still the ones ingested; else a CustodyError saying what changed."""
    check = check_original(rec)
    if check.status == "missing":
        raise CustodyError(f"{rec.file_name}: the original is missing from {rec.path}; "
                           "put it back there (`earmark verify` checks every original)")
    if check.status == "changed":
        raise CustodyError(f"{rec.file_name}: the original at {rec.path} has changed since ingest "
                           f"(sha256 {check.actual[:12]}…, ingested as {rec.sha256[:12]}…); refusing to use it")
    return Path(rec.path)


# --- questions ---------------------------------------------------------------------------
def questions_enabled(library: Library) -> bool:
    """Whether questions are audit-logged: env EARMARK_AUDIT_QUESTIONS=1, else the library's setting."""
    env = env_switch(QUESTIONS_ENV, None)
    if env is not None:
        return env
    row = library.db.execute("SELECT value FROM meta WHERE key=?", (QUESTIONS_KEY,)).fetchone()
    return bool(row) and row["value"] == "1"


def set_questions(library: Library, on: bool) -> None:
    """Turn the library's logging of questions on or off (itself an audit event)."""
    library.db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                       (QUESTIONS_KEY, "1" if on else "0"))
    log_event(library.root, "setting", name=QUESTIONS_KEY, value=on)


def log_question(library: Library, question: str) -> None:
    """Record a question asked, if the library or environment asks for questions to be logged."""
    if questions_enabled(library):
        log_event(library.root, "ask", question=question)


# --- deletion --------------------------------------------------------------------------------
def delete_recording(library: Library, rec: Recording, reason: str | None = None) -> Path:
    """Remove a recording (see _delete), holding the library's writer lock; `reason` goes in the audit
    log (the watcher's: the file vanished or changed)."""
    with library.writing():
        return _delete(library, rec, reason)


def _delete(library: Library, rec: Recording, reason: str | None = None) -> Path:
    """Remove a recording from the catalog and both indexes; its transcripts move to LIBRARY/deleted/HASH/.

    Transcripts are moved, not destroyed, so what was deleted stays reviewable; the audit log records it.
    """
    dest = library.root / "deleted" / rec.sha256
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted((library.root / "transcripts").glob(f"{rec.sha256}*.json")):
        shutil.move(str(f), dest / f.name)
    redactions = library.root / "redactions" / f"{rec.sha256}.json"
    if redactions.exists():
        shutil.move(str(redactions), dest / "redactions.json")
    summary = library.root / "summaries" / f"{rec.sha256}.json"
    if summary.exists():
        shutil.move(str(summary), dest / "summary.json")
    library.index.delete_file(rec.sha256)
    with library.db:
        library.db.execute("BEGIN")
        lexical.replace_file(library.db, rec.sha256, [])
        library.db.execute("DELETE FROM recordings WHERE sha256=?", (rec.sha256,))
        library.db.execute("DELETE FROM renderings WHERE file_hash=?", (rec.sha256,))
    log_event(library.root, "delete", file=rec.file_name, sha256=rec.sha256, path=rec.path,
              moved_to=str(dest.relative_to(library.root)), **({"reason": reason} if reason else {}))
    return dest
