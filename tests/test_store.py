"""The library directory: embedder recorded and enforced, transcripts versioned, index rebuildable."""

import json
import sqlite3

import pytest

from pipeline.errors import LibraryError
from pipeline.ingest import index_transcript
from pipeline.records import Segment, Transcript
from pipeline.store import Library


def _transcript(text="Hello there.", created="2026-01-01T00:00:00+00:00"):
    seg = Segment(id=0, start=0.5, end=2.0, text=text, words=(), language="en", avg_logprob=-0.2,
                  no_speech_prob=0.01, compression_ratio=1.1)
    return Transcript(file_hash="cd" * 32, file_name="a.wav", duration=3.0, segments=(seg,),
                      model={"name": "base"}, created=created)


def test_opening_with_another_embedder_is_an_error(tmp_path):
    Library(tmp_path, "all-MiniLM-L6-v2").close()
    with pytest.raises(LibraryError, match="indexed with embedder 'all-MiniLM-L6-v2'.*--embed-model"):
        Library(tmp_path, "some-other-embedder")


def test_a_library_opened_without_an_embedder_keeps_its_own(tmp_path):
    from pipeline.config import EmbedOptions

    Library(tmp_path / "old", "all-MiniLM-L6-v2").close()
    lib = Library(tmp_path / "old")
    assert lib.embed_model == "all-MiniLM-L6-v2"
    lib.close()
    new = Library(tmp_path / "new")
    assert new.embed_model == EmbedOptions().model == "multilingual-e5-small"
    new.close()
    assert Library(tmp_path / "new").embed_model == "multilingual-e5-small"


def test_catalog_uses_wal(tmp_path):
    lib = Library(tmp_path, "m")
    assert lib.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_retranscription_keeps_the_old_transcript_as_a_version(tmp_path):
    lib = Library(tmp_path, "m")
    lib.save_transcript(_transcript("First take."))
    lib.save_transcript(_transcript("Second take.", created="2026-02-01T00:00:00+00:00"))
    assert lib.transcript("cd" * 32).segments[0].text == "Second take."
    versions = sorted((tmp_path / "transcripts").glob("*.json"))
    assert len(versions) == 2
    assert any(json.loads(v.read_text())["segments"][0]["text"] == "First take." for v in versions)
    assert not list((tmp_path / "transcripts").glob("*.tmp"))


def test_index_is_rebuilt_from_transcripts(tmp_path, embedder):
    lib = Library(tmp_path, embedder.name)
    t = _transcript("The quarterly budget was approved on Tuesday.")
    lib.save_transcript(t)
    assert index_transcript(lib, embedder, t, __import__("pipeline.config").config.ChunkOptions()) == 1
    assert index_transcript(lib, embedder, t, __import__("pipeline.config").config.ChunkOptions()) == 1
    assert lib.index.count() == 1  # idempotent: re-indexing replaces, never duplicates
    hit = lib.index.query(embedder.embed(["when was the budget approved"])[0], 5)[0]
    assert (hit.file, hit.start, hit.end) == ("a.wav", 0.5, 2.0)


def test_transcripts_are_parsed_once_and_reread_after_a_new_version(tmp_path):
    lib = Library(tmp_path, "m")
    lib.save_transcript(_transcript("First take."))
    first = lib.transcript("cd" * 32)
    assert lib.transcript("cd" * 32) is first  # cached: the same object, not a second parse
    lib.save_transcript(_transcript("Second take.", created="2026-02-01T00:00:00+00:00"))
    assert lib.transcript("cd" * 32).segments[0].text == "Second take."


def test_a_lexical_index_over_raw_text_is_rebuilt_with_tokens_and_keeps_its_rows(tmp_path):
    """An older earmark indexed the raw passage text, so unspaced Japanese was one token; opening the
    library rebuilds the index with this version's tokens and loses no passage."""
    import sqlite3

    from pipeline import lexical

    root = tmp_path / "old"
    root.mkdir()
    db = sqlite3.connect(root / "catalog.sqlite")
    db.execute("CREATE VIRTUAL TABLE passages_fts USING fts5(text, passage_id UNINDEXED, file_hash UNINDEXED, "
               "file UNINDEXED, start UNINDEXED, end UNINDEXED, language UNINDEXED, "
               "tokenize = 'unicode61 remove_diacritics 2')")
    db.executemany("INSERT INTO passages_fts VALUES (?,?,?,?,?,?,?)", [
        ("客観的実在の判断的知識が成立するのである。", "h1:0", "h1", "ja.wav", 0.5, 4.6, "ja"),
        ("Ask what you can do for your country.", "h2:0", "h2", "jfk.flac", 7.9, 10.4, "en")])
    db.commit()
    assert db.execute("SELECT count(*) FROM passages_fts WHERE passages_fts MATCH '知識'").fetchone()[0] == 0
    db.close()

    lib = Library(root)
    assert [h.file for h in lexical.query(lib.db, "知識", 5)] == ["ja.wav"]
    assert [h.file for h in lexical.query(lib.db, "知识", 5)] == ["ja.wav"]  # the simplified form too
    [jfk] = lexical.query(lib.db, "country", 5)
    assert (jfk.passage_id, jfk.start, jfk.end) == ("h2:0", 7.9, 10.4)
    assert jfk.text == "Ask what you can do for your country."
    assert lib.db.execute("SELECT value FROM meta WHERE key = 'lexical_tokens'").fetchone()[0] == lexical.TOKENS
    # An index cut by an earlier version of the tokenizer is rebuilt too; the current one is left alone.
    lib.db.execute("UPDATE passages SET tokens = 'stale' WHERE passage_id = 'h2:0'")
    lib.db.execute("INSERT INTO passages_fts (passages_fts) VALUES ('rebuild')")
    assert [h.passage_id for h in lexical.query(Library(root).db, "stale", 5)] == ["h2:0"]
    lib.db.execute("UPDATE meta SET value = '2' WHERE key = 'lexical_tokens'")
    rebuilt = Library(root).db
    assert lexical.query(rebuilt, "stale", 5) == []
    assert [h.passage_id for h in lexical.query(rebuilt, "country", 5)] == ["h2:0"]
    assert rebuilt.execute("SELECT count(*) FROM passages").fetchone()[0] == 2


def _one_file_library(run_cli, lib):
    from .conftest import SAMPLES

    code, _, err = run_cli("--library", lib, "ingest", "--no-diarize", SAMPLES / "jfk-inaugural-1961-excerpt.flac",
                           SAMPLES / "librispeech-1995-1837-0001.wav")
    assert code == 0, err
    with sqlite3.connect(lib / "catalog.sqlite") as db:
        return dict(db.execute("SELECT file_name, sha256 FROM recordings").fetchall())


def test_a_damaged_catalog_row_reads_as_unknown_and_names_itself(run_cli, tmp_path, caplog):
    lib = tmp_path / "lib"
    sha = _one_file_library(run_cli, lib)["jfk-inaugural-1961-excerpt.flac"]
    with sqlite3.connect(lib / "catalog.sqlite") as db:
        db.execute("UPDATE recordings SET languages='[\"en', transcribe_model='{oops', duration='long' WHERE sha256=?",
                   (sha,))
    code, out, err = run_cli("--library", lib, "status", "--json")
    assert code == 0, err
    rows = {r["file"]: r for r in json.loads(out)["recordings"]}
    assert rows["jfk-inaugural-1961-excerpt.flac"]["languages"] == [] and rows["librispeech-1995-1837-0001.wav"]["languages"]
    assert any(sha[:12] in r.message and "languages" in r.message for r in caplog.records)


def test_a_broken_transcript_is_one_line_naming_it_and_reindex_goes_on(run_cli, tmp_path):
    lib = tmp_path / "lib"
    shas = _one_file_library(run_cli, lib)
    sha = shas["jfk-inaugural-1961-excerpt.flac"]
    path = lib / "transcripts" / f"{sha}.json"
    path.write_text(path.read_text()[:200])
    code, out, err = run_cli("--library", lib, "transcript", "jfk-inaugural-1961-excerpt.flac")
    assert code == 2 and sha[:12] in err and "damaged" in err and len(err.strip().splitlines()) == 1
    code, out, err = run_cli("--library", lib, "reindex")
    assert code == 1 and "FAIL  jfk-inaugural-1961-excerpt.flac" in err and "Traceback" not in err
    assert "librispeech-1995-1837-0001.wav: 1 passage" in out
