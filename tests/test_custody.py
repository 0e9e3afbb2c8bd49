"""Chain of custody through the real `earmark` entry point: originals re-hashed, a tamper-evident audit log,
deletion that leaves a record."""

import hashlib
import json
import multiprocessing

import pytest

from pipeline.store import Library

JFK = "jfk-inaugural-1961-excerpt.flac"
LIBRI = "librispeech-1272-128104-0000.wav"


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _audit(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "library" / "audit.jsonl").read_text().splitlines()]


def test_ingest_records_hash_size_path_and_time(run_cli, clips_dir, tmp_path):
    code, _, _ = run_cli("-q", "ingest", clips_dir / JFK)
    assert code == 0
    entry = _audit(tmp_path)[0]
    assert entry["event"] == "ingest" and entry["seq"] == 1
    assert entry["sha256"] == _sha(clips_dir / JFK) and entry["size"] == (clips_dir / JFK).stat().st_size
    assert entry["path"] == str((clips_dir / JFK).resolve()) and entry["time"].startswith("20")
    code, out, _ = run_cli("verify", "--json")
    assert code == 0 and json.loads(out) == {"ok": True, "files": [
        {"file": JFK, "path": entry["path"], "status": "ok", "expected": entry["sha256"], "actual": entry["sha256"]}]}


def test_verify_names_a_one_byte_edit_and_a_missing_original(run_cli, clips_dir):
    code, _, _ = run_cli("-q", "ingest", clips_dir)
    assert code == 0
    code, out, _ = run_cli("verify")
    assert code == 0 and "2 originals checked, 0 changed or missing" in out
    ingested = _sha(clips_dir / JFK)
    data = bytearray((clips_dir / JFK).read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one byte, in the middle of the audio
    (clips_dir / JFK).write_bytes(bytes(data))
    (clips_dir / LIBRI).unlink()
    code, out, _ = run_cli("verify")
    assert code == 1
    assert f"changed  {JFK}  CHANGED: sha256 {_sha(clips_dir / JFK)} (ingested as {ingested})" in out
    assert f"missing  {LIBRI}  missing from" in out
    code, out, _ = run_cli("verify", "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert {f["file"]: (f["status"], f["actual"]) for f in report["files"]} == {
        JFK: ("changed", _sha(clips_dir / JFK)), LIBRI: ("missing", None)}
    # Nothing is cut from an original that is not the one ingested.
    code, _, err = run_cli("clip", JFK, "1", "2", "-o", clips_dir / "out.wav")
    assert code == 2 and "has changed since ingest" in err and not (clips_dir / "out.wav").exists()


def _tampered(tmp_path, run_cli, lines: list[str]) -> list[dict]:
    (tmp_path / "library" / "audit.jsonl").write_text("".join(lines))
    code, out, _ = run_cli("verify", "--audit", "--json")
    audit = json.loads(out)["audit"]
    assert code == 1 and audit["ok"] is False
    return audit["problems"]


def test_audit_log_edits_deletions_and_reordering_are_detected(run_cli, clips_dir, tmp_path):
    run_cli("-q", "ingest", clips_dir / LIBRI)
    for fmt in ("srt", "vtt", "txt", "json"):
        assert run_cli("export", LIBRI, "--format", fmt)[0] == 0
    log_path = tmp_path / "library" / "audit.jsonl"
    lines = log_path.read_text().splitlines(keepends=True)
    assert [json.loads(x)["event"] for x in lines] == ["ingest", "export", "export", "export", "export"]
    code, out, _ = run_cli("verify", "--audit")
    assert code == 0 and "audit log: 5 entries, intact" in out

    edited = list(lines)
    edited[2] = edited[2].replace('"format":"vtt"', '"format":"srt"')
    assert edited[2] != lines[2]
    problems = _tampered(tmp_path, run_cli, edited)
    assert problems[0]["line"] == 3 and "altered" in problems[0]["problem"]

    # An edit whose hash is recomputed still breaks the link from the line after it.
    entry = json.loads(edited[2])
    body = {k: v for k, v in entry.items() if k != "hash"}
    entry["hash"] = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    edited[2] = json.dumps(entry, separators=(",", ":")) + "\n"
    assert [p["line"] for p in _tampered(tmp_path, run_cli, edited)] == [4]

    problems = _tampered(tmp_path, run_cli, lines[:1] + lines[2:])  # line 2 deleted
    assert {p["line"] for p in problems} == {2} and "removed" in problems[0]["problem"]

    problems = _tampered(tmp_path, run_cli, [lines[0], lines[2], lines[1], *lines[3:]])  # 2 and 3 swapped
    assert problems[0]["line"] == 2 and {p["line"] for p in problems} <= {2, 3, 4}

    problems = _tampered(tmp_path, run_cli, lines[:-1])  # the last line cut off
    assert problems[0]["line"] == 5 and "cut from the end" in problems[0]["problem"]

    log_path.write_text("".join(lines))
    code, out, _ = run_cli("verify", "--audit")
    assert code == 0 and "intact" in out


def _append_many(root: str, writer: int, n: int) -> None:
    from pipeline.audit import log_event

    for i in range(n):
        log_event(root, "test", writer=writer, i=i)


def test_concurrent_writers_keep_one_unbroken_chain(tmp_path):
    from pipeline.audit import verify_audit
    from pipeline.store import Library

    Library(tmp_path / "lib", "all-MiniLM-L6-v2").close()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(tmp_path / "lib"), w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    check = verify_audit(tmp_path / "lib")
    assert check.ok, check.problems[:3]
    entries = [json.loads(x) for x in (tmp_path / "lib" / "audit.jsonl").read_text().splitlines()]
    assert [e["seq"] for e in entries] == list(range(1, 161))
    assert sorted((e["writer"], e["i"]) for e in entries) == [(w, i) for w in range(4) for i in range(40)]


def test_questions_are_logged_only_when_enabled(run_cli, clips_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("EARMARK_AUDIT_QUESTIONS", raising=False)
    run_cli("-q", "ingest", clips_dir / LIBRI)
    # Unrelated questions: answered "nothing found" without loading the LLM, but asked all the same.
    run_cli("ask", "What is the boiling point of mercury?")
    assert [e["event"] for e in _audit(tmp_path)] == ["ingest"]
    monkeypatch.setenv("EARMARK_AUDIT_QUESTIONS", "1")
    run_cli("ask", "How tall is the Eiffel tower?")
    monkeypatch.delenv("EARMARK_AUDIT_QUESTIONS")
    run_cli("ask", "Who won the 1998 world cup?")
    assert run_cli("audit", "questions", "on")[0] == 0
    run_cli("ask", "What colour is a ripe banana?")
    asked = [e["question"] for e in _audit(tmp_path) if e["event"] == "ask"]
    assert asked == ["How tall is the Eiffel tower?", "What colour is a ripe banana?"]
    assert run_cli("verify", "--audit")[0] == 0


def test_delete_removes_a_recording_everywhere_and_keeps_a_record(run_cli, clips_dir, tmp_path):
    run_cli("-q", "ingest", clips_dir)
    sha = _sha(clips_dir / JFK)
    code, out, _ = run_cli("search", "ask not what your country can do for you", "--json")
    assert JFK in {h["file"] for h in json.loads(out)["hits"]}
    lib = Library(tmp_path / "library")  # an English rendering kept for it (translation.py) goes too
    lib.add_rendering(sha, "llama-cpp:default", "Ask not.", "Ask not.")
    lib.close()
    code, out, _ = run_cli("delete", JFK)
    assert code == 0 and f"deleted {JFK}" in out
    status = json.loads(run_cli("status", "--json")[1])
    assert [r["file"] for r in status["recordings"]] == [LIBRI]
    for mode in ("dense", "lexical"):
        hits = json.loads(run_cli("search", "ask not what your country can do", "--mode", mode, "--json")[1])["hits"]
        assert JFK not in {h["file"] for h in hits}, mode
    library = tmp_path / "library"
    assert not list((library / "transcripts").glob(f"{sha}*"))
    lib = Library(library)
    assert lib.renderings(sha, "llama-cpp:default", ["Ask not."]) == {}
    lib.close()
    assert json.loads((library / "deleted" / sha / f"{sha}.json").read_text())["file_name"] == JFK
    last = _audit(tmp_path)[-1]
    assert last["event"] == "delete" and last["sha256"] == sha and last["moved_to"] == f"deleted/{sha}"
    code, out, _ = run_cli("verify", "--audit")
    assert code == 0 and "1 originals checked" in out
    # Deleted means gone: asking for it again is an error that says so.
    code, _, err = run_cli("export", JFK, "--format", "txt")
    assert code == 2 and "is not in the library" in err


@pytest.mark.parametrize("bad", ["12.5-", "abc", "14-12", "1:75-2:00"])
def test_bad_ranges_are_refused_with_a_message(run_cli, clips_dir, bad):
    code, _, err = run_cli("redact", LIBRI, "--ranges", bad, "-o", clips_dir / "r.wav")
    assert code == 2 and err.startswith("earmark: ") and len(err.strip().splitlines()) == 1
    assert bad.split("-")[0] in err and ("range" in err or "time" in err)
    assert not (clips_dir / "r.wav").exists()
