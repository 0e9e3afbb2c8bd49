"""Passage vectors on a real Chroma server (`chroma run`, from the chromadb package, on a loopback port
started here): ingest, search, ask, delete and reindex through the CLI; a library moved to the server and
back; a server that is down. Nothing is mocked."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from earmark_eval.reliability.server import free_port

from .conftest import SAMPLES, server_process

JFK = SAMPLES / "jfk-inaugural-1961-excerpt.flac"
OTHER = SAMPLES / "librispeech-1995-1837-0001.wav"
CHROMA = Path(sys.executable).with_name("chroma")



@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    if not CHROMA.exists():
        pytest.skip(f"{CHROMA} is absent (it comes with the chromadb package)")
    port, data = free_port(), tmp_path_factory.mktemp("chroma-server")
    url = f"http://127.0.0.1:{port}"
    with server_process([str(CHROMA), "run", "--path", str(data / "db"), "--host", "127.0.0.1", "--port", str(port)],
                        f"{url}/api/v2/heartbeat", data / "server.log", seconds=60):
        yield url


def _server_count(url: str, library: Path) -> int:
    """How many passages the server holds for this library, asked of the server itself."""
    import sqlite3

    import chromadb

    with sqlite3.connect(library / "catalog.sqlite") as db:
        lib_id = db.execute("SELECT value FROM meta WHERE key='library_id'").fetchone()[0]
    host, port = url.removeprefix("http://").split(":")
    return chromadb.HttpClient(host=host, port=int(port)).get_collection(f"earmark-{lib_id}").count()


def _passages(library: Path) -> int:
    import sqlite3

    with sqlite3.connect(library / "catalog.sqlite") as db:
        return db.execute("SELECT COALESCE(SUM(passages), 0) FROM recordings").fetchone()[0]


def test_ingest_search_ask_and_delete_with_the_vectors_on_a_chroma_server(chroma_server, tmp_path, run_cli,
                                                                          monkeypatch):
    lib = tmp_path / "library"
    monkeypatch.setenv("EARMARK_LIBRARY", str(lib))
    monkeypatch.setenv("EARMARK_CHROMA_URL", chroma_server)
    code, out, err = run_cli("ingest", JFK, OTHER, "--no-diarize")
    assert code == 0, err
    assert not (lib / "chroma").exists()  # nothing embedded: the vectors are on the server
    assert _server_count(chroma_server, lib) == _passages(lib) > 0

    code, out, err = run_cli("search", "what you can do for your country", "--json", "--mode", "dense", "--local")
    assert code == 0, err
    assert json.loads(out)["hits"][0]["file"] == JFK.name
    code, out, err = run_cli("ask", "What did Kennedy ask Americans to do?", "--json", "--local")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["found"] and answer["citations"][0]["file"] == JFK.name

    code, out, err = run_cli("delete", JFK.name)
    assert code == 0, err
    assert _server_count(chroma_server, lib) == _passages(lib) > 0
    code, out, err = run_cli("search", "what you can do for your country", "--json", "--mode", "dense", "--local")
    assert {h["file"] for h in json.loads(out)["hits"]} == {OTHER.name}


def test_a_library_moves_to_the_server_and_back_by_reindex(chroma_server, tmp_path, run_cli, monkeypatch):
    lib = tmp_path / "library"
    monkeypatch.setenv("EARMARK_LIBRARY", str(lib))
    monkeypatch.delenv("EARMARK_CHROMA_URL", raising=False)
    assert run_cli("ingest", JFK, "--no-diarize")[0] == 0
    query = ("search", "what you can do for your country", "--json", "--mode", "dense", "--local")
    embedded = json.loads(run_cli(*query)[1])["hits"]

    monkeypatch.setenv("EARMARK_CHROMA_URL", chroma_server)  # the vectors are not there yet: said so
    code, out, err = run_cli(*query)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "keeps its passage vectors embedded in the library" in err and "earmark reindex" in err
    code, out, err = run_cli("reindex")
    assert code == 0 and f"building the passage vectors in {chroma_server}" in err, err
    assert _server_count(chroma_server, lib) == _passages(lib)
    code, out, err = run_cli(*query)
    assert code == 0 and json.loads(out)["hits"] == embedded  # the same hits from the server

    monkeypatch.delenv("EARMARK_CHROMA_URL")  # and back
    code, out, err = run_cli(*query)
    assert code == 2 and f"on the Chroma server at {chroma_server}" in err
    assert run_cli("reindex")[0] == 0
    assert json.loads(run_cli(*query)[1])["hits"] == embedded


def test_a_chroma_server_that_is_down_is_one_line(tmp_path, run_cli, monkeypatch):
    down = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("EARMARK_LIBRARY", str(tmp_path / "library"))
    monkeypatch.setenv("EARMARK_CHROMA_URL", "")  # the flag sets it for the process; undone after the test
    code, out, err = run_cli("--chroma-url", down, "ingest", JFK, "--no-diarize")
    assert code == 1  # the file failed, said why, and nothing half-written is left as indexed
    failed = [line for line in err.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1 and f"the Chroma server at {down} did not answer" in failed[0], err
    code, out, err = run_cli("--chroma-url", down, "search", "country", "--local")
    assert code == 2 and len(err.strip().splitlines()) == 1 and f"the Chroma server at {down}" in err, err
