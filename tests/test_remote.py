"""`earmark search` and `ask` answered by a running `earmark serve` of the same library (remote.py):
a real server on a loopback port, the real CLI, the same output as answering locally."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest

from pipeline import remote

from .conftest import ROOT
from earmark_eval.reliability.server import free_port

from .test_browser import _serving

QUERY = "what you can do for your country"


@pytest.fixture(scope="module")
def served(sample_library, embedder):
    from pipeline.config import ServeOptions
    from pipeline.web import create_app

    port = free_port()
    app = create_app(sample_library.root, embedder.name, replace(ServeOptions(), port=port))
    with _serving(app, port) as url:
        yield url
    assert not remote.note_path(sample_library.root).exists(), "the server left its note behind"


def test_the_server_leaves_a_note_the_cli_finds(served, sample_library):
    note = json.loads(remote.note_path(sample_library.root).read_text())
    assert note == {"url": served, "pid": os.getpid(), "token": False}
    assert remote.find(sample_library.root) == (served, None)


def test_search_through_the_server_prints_what_a_local_search_prints(served, sample_library, run_cli, monkeypatch):
    monkeypatch.setenv("EARMARK_LIBRARY", str(sample_library.root))
    code, there, err = run_cli("search", QUERY, "--json", "-k", "3")
    assert code == 0 and f"answered by earmark serve at {served}" in err
    code, here, err = run_cli("search", QUERY, "--json", "-k", "3", "--local")
    assert code == 0 and "answered by" not in err
    assert json.loads(there) == json.loads(here)  # the same hits, the same shape (no server additions)
    assert json.loads(there)["hits"][0]["file"] == "jfk-inaugural-1961-excerpt.flac"


def test_a_filter_the_server_does_not_take_is_answered_here(served, sample_library, run_cli, monkeypatch):
    monkeypatch.setenv("EARMARK_LIBRARY", str(sample_library.root))
    code, out, err = run_cli("search", QUERY, "--json", "--language", "en")
    assert code == 0 and "answered by" not in err and json.loads(out)["hits"]
    code, out, err = run_cli("search", QUERY, "--json", "--file", "jfk*")
    assert code == 0 and "answered by" in err
    assert {h["file"] for h in json.loads(out)["hits"]} == {"jfk-inaugural-1961-excerpt.flac"}


def test_ask_through_the_server_streams_and_cites(served, sample_library, run_cli, monkeypatch):
    monkeypatch.setenv("EARMARK_LIBRARY", str(sample_library.root))
    code, out, err = run_cli("ask", "What did Kennedy ask Americans to do?")
    assert code == 0 and "answered by earmark serve" in err, err
    lines = out.strip().splitlines()
    assert "country" in lines[0].lower() and "jfk-inaugural-1961-excerpt.flac @ 00:" in lines[1]
    code, out, err = run_cli("ask", "What did Kennedy ask Americans to do?", "--json")
    answer = json.loads(out)
    assert set(answer) == {"question", "answer", "found", "citations"}
    assert answer["found"] and set(answer["citations"][0]) == {"n", "file", "start", "end", "text"}


def test_a_note_left_by_a_dead_server_or_another_library_is_ignored(tmp_path, sample_library, served):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lib = tmp_path / "lib"
    lib.mkdir()
    remote.note_path(lib).write_text(json.dumps({"url": served, "pid": dead.pid, "token": False}))
    assert remote.find(lib) is None  # killed -9: its note stayed, its pid is gone
    remote.note_path(lib).write_text(json.dumps({"url": served, "pid": os.getpid(), "token": False}))
    assert remote.find(lib) is None  # alive, but it serves the sample library, not this one
    remote.note_path(lib).write_text("{not json")
    assert remote.find(lib) is None


def test_the_real_command_uses_the_server(served, sample_library):
    """The installed entry point, in its own process, as a user types it."""
    run = subprocess.run([sys.executable, "-m", "pipeline", "--library", str(sample_library.root), "search",
                          QUERY, "-k", "1"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stderr.strip() == f"(answered by earmark serve at {served}; --local answers here)"
    assert "jfk-inaugural-1961-excerpt.flac @ 00:00" in run.stdout
