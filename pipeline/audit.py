"""The tamper-evident audit log, `LIBRARY/audit.jsonl`.

The log is append-only: each line is one JSON entry carrying `prev`, the SHA-256 of the previous line,
and `hash`, the SHA-256 of the entry itself (canonical JSON without `hash`). Editing a line breaks its
`hash` (or, if that is recomputed, the next line's `prev`); deleting or reordering lines breaks `seq`
and `prev`; cutting lines off the end is caught by the head (last seq and hash) that every append also
records in the catalog. It works on a library's directory alone, so the store (which mends a head a
kill left behind, `repair_head`) and custody.py (originals, deletion) both stand on it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from . import trace
from .errors import CustodyError
from .records import now

log = logging.getLogger(__name__)

AUDIT_FILE = "audit.jsonl"
GENESIS = "0" * 64  # the `prev` of the first entry
RESERVED = frozenset({"seq", "time", "event", "prev", "hash"})
HEAD_KEY = "audit_head"  # catalog meta: {"seq", "hash"} of the last entry appended


def _digest(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def _entry_hash(entry: dict) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return _digest(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False))


def log_event(root: Path, event: str, **details) -> dict:
    """Append one entry to LIBRARY/audit.jsonl (locked against concurrent writers, one write + fsync)."""
    clash = RESERVED & details.keys()
    if clash:
        raise ValueError(f"audit details may not be named {sorted(clash)}")
    path = Path(root) / AUDIT_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as e:
        raise CustodyError(f"cannot open the audit log {path}: {e.strerror}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        last = _last_line(fd)
        seq, prev = (1, GENESIS) if last is None else (_seq_of(last, fd) + 1, _digest(last))
        entry = {"seq": seq, "time": now(), "event": event, **details, "prev": prev}
        entry["hash"] = _entry_hash(entry)
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        torn = last is not None and not _ends_with_newline(fd)
        os.write(fd, (b"\n" if torn else b"") + line)  # one write: a line is whole or absent
        os.fsync(fd)
        # A kill here leaves the log one entry past the catalog's head; repair_head mends exactly that.
        trace.point("audit", str(details.get("file") or event))
        _set_head(Path(root), {"seq": seq, "hash": entry["hash"]})
    finally:
        os.close(fd)  # closing releases the lock
    log.debug("audit %s #%d", event, seq)
    return entry


def _last_line(fd: int) -> bytes | None:
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    block = 1 << 16
    while True:
        start = max(0, size - block)
        data = os.pread(fd, size - start, start).rstrip(b"\n")
        cut = data.rfind(b"\n")
        if cut >= 0 or start == 0:
            return data[cut + 1:]
        block *= 4


def _tail(fd: int, n: int) -> list[bytes]:
    """The last n lines (fewer if the log is shorter), oldest first."""
    size, block = os.fstat(fd).st_size, 1 << 16
    while True:
        start = max(0, size - block)
        lines = os.pread(fd, size - start, start).rstrip(b"\n").split(b"\n")
        if len(lines) > n or start == 0:
            return [x for x in lines[-n:] if x]
        block *= 4


def repair_head(root: Path) -> bool:
    """Move the catalog's audit head onto the log's last entry when a writer was killed between
    appending that entry (fsynced) and recording it as the head; True if it did.

    Only that one case is mended: the last entry is seq head+1, links to the head's line, and the
    line before it is the head entry. Anything else (lines cut off, edited, several unrecorded
    entries) is left for `verify --audit` to report. Callers hold the writer lock (store.Library.writing)."""
    path = Path(root) / AUDIT_FILE
    if not path.exists():
        return False
    head = _get_head(Path(root))
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # no append may run between reading the tail and moving the head
        lines = _tail(fd, 2)
        try:
            last = json.loads(lines[-1])
        except (ValueError, IndexError):
            return False
        before = lines[0] if len(lines) == 2 else None
        if head is None:
            fits = before is None and last.get("seq") == 1 and last.get("prev") == GENESIS
        else:
            try:
                head_entry = json.loads(before) if before else None
            except ValueError:
                return False
            fits = (head_entry is not None and head_entry.get("seq") == head["seq"]
                    and head_entry.get("hash") == head["hash"] and last.get("seq") == head["seq"] + 1
                    and last.get("prev") == _digest(before))
        if not fits or last.get("hash") != _entry_hash(last):
            return False
        _set_head(Path(root), {"seq": last["seq"], "hash": last["hash"]})
    finally:
        os.close(fd)
    log.warning("audit log: entry seq %d was written but a kill stopped the catalog recording it; "
                "recorded it now", last["seq"])
    return True


def logged_ingest(root: Path, sha256: str) -> bool:
    """Whether the log's latest ingest-or-delete entry for this recording is an ingest: an ingest
    killed after its audit entry but before the recording was marked indexed must not log it twice."""
    path = Path(root) / AUDIT_FILE
    if not path.exists():
        return False
    latest = None
    key = sha256.encode()
    with path.open("rb") as f:
        for raw in f:
            if key not in raw:  # cheap test first: most lines are about other recordings
                continue
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if entry.get("sha256") == sha256 and entry.get("event") in ("ingest", "delete"):
                latest = entry["event"]
    return latest == "ingest"


def _ends_with_newline(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return size == 0 or os.pread(fd, 1, size - 1) == b"\n"


def _seq_of(line: bytes, fd: int) -> int:
    try:
        return int(json.loads(line)["seq"])
    except (ValueError, KeyError, TypeError):
        # The last line is damaged (verify --audit reports it); number on from the line count.
        size = os.fstat(fd).st_size
        return os.pread(fd, size, 0).rstrip(b"\n").count(b"\n") + 1


def _catalog(root: Path) -> sqlite3.Connection | None:
    db_path = root / "catalog.sqlite"
    if not db_path.exists():
        return None
    db = sqlite3.connect(db_path, timeout=30, isolation_level=None)
    db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    return db


def _set_head(root: Path, head: dict) -> None:
    db = _catalog(root)
    if db is None:
        return
    with db:
        db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                   (HEAD_KEY, json.dumps(head)))
    db.close()


def _get_head(root: Path) -> dict | None:
    db = _catalog(root)
    if db is None:
        return None
    row = db.execute("SELECT value FROM meta WHERE key=?", (HEAD_KEY,)).fetchone()
    db.close()
    return json.loads(row[0]) if row else None


@dataclass
class AuditCheck:
    entries: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line number, what is wrong)

    @property
    def ok(self) -> bool:
        """True when no line has a problem."""
        return not self.problems

    def to_json(self) -> dict:
        """The `verify --audit --json` shape of the log check."""
        return {"ok": self.ok, "entries": self.entries,
                "problems": [{"line": n, "problem": p} for n, p in self.problems]}


def verify_audit(root: Path) -> AuditCheck:
    """Check every line's hash, its link to the line before, its sequence number, and the recorded head."""
    path = Path(root) / AUDIT_FILE
    check = AuditCheck()
    lines = path.read_bytes().split(b"\n") if path.exists() else []
    if lines and lines[-1] == b"":
        lines.pop()
    prev, expected_seq, last = GENESIS, 1, None
    for n, raw in enumerate(lines, 1):
        try:
            entry = json.loads(raw)
            seq = entry["seq"]
        except (ValueError, KeyError, TypeError):
            check.problems.append((n, "not an audit entry (damaged or inserted line)"))
            prev, expected_seq = _digest(raw), expected_seq + 1
            continue
        if entry.get("hash") != _entry_hash(entry):
            check.problems.append((n, f"entry seq {seq} was altered (its hash does not match its content)"))
        if entry.get("prev") != prev:
            check.problems.append((n, "does not follow the line before it (a line was removed, inserted "
                                      "or reordered here)"))
        if seq != expected_seq:
            check.problems.append((n, f"has seq {seq} where {expected_seq} was expected"))
        prev, expected_seq, last = _digest(raw), (seq + 1 if isinstance(seq, int) else expected_seq + 1), entry
    check.entries = len(lines)
    head = _get_head(Path(root))
    if head and last is not None and last.get("seq") == head["seq"] + 1 and last.get("prev") == _digest(lines[-2] if len(lines) > 1 else b""):
        check.problems.append((len(lines), f"entry seq {last.get('seq')} is not yet recorded in the catalog (a write "
                                           "was interrupted there, or the line was appended): the next write to "
                                           "the library records it"))
    elif head and (last is None or last.get("seq") != head["seq"] or last.get("hash") != head["hash"]):
        check.problems.append((len(lines) + 1, f"the log ends before entry seq {head['seq']}, the last one the "
                                               "catalog recorded (lines were cut from the end, or replaced)"))
    return check
