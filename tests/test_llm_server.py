"""The openai backend against a real OpenAI-compatible server, no mock: llama-cpp-python's own
`llama_cpp.server` serving the packaged GGUF on 127.0.0.1, started here. Streaming, the JSON-schema
answer (checked against the transcript like any other), a server that is down and one that is too slow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace

import pytest

from earmark_eval.reliability.server import free_port

from pipeline.answer import ask
from pipeline.config import AnswerOptions
from pipeline.errors import LLMError

from .conftest import ROOT, server_process

QUESTION = "What did Kennedy ask Americans to do?"



@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python -m llama_cpp.server` on a free loopback port with the packaged answerer; yields its /v1 URL."""
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] is not installed")
    pytest.importorskip("langchain_openai", reason="langchain-openai is not installed")
    from pipeline.models import llm_gguf

    port, log = free_port(), tmp_path_factory.mktemp("llm-server") / "server.log"
    url = f"http://127.0.0.1:{port}/v1"
    with server_process([sys.executable, "-m", "llama_cpp.server", "--model", str(llm_gguf()), "--host", "127.0.0.1",
                         "--port", str(port), "--n_ctx", "4096", "--n_threads", "2", "--model_alias", "local"],
                        f"{url}/models", log, seconds=180):
        with urllib.request.urlopen(f"{url}/models", timeout=5) as r:
            assert json.load(r)["data"][0]["id"] == "local"
        yield url


def _options(url: str, **kw) -> AnswerOptions:
    return replace(AnswerOptions(), llm="openai", base_url=url, model="local", **kw)


def test_an_answer_from_the_server_streams_and_is_cited_and_checked(server, sample_library, embedder):
    pieces: list[str] = []
    a = ask(sample_library, embedder, QUESTION, _options(server), on_token=pieces.append)
    assert a.found and a.citations, a
    c = a.citations[0]
    assert c.file == "jfk-inaugural-1961-excerpt.flac" and "your country" in c.text.lower()
    assert 0.0 <= c.start < c.end <= 11.0
    # Streamed: many pieces as the server wrote them, which together are the schema's JSON.
    assert len(pieces) > 5
    reply = json.loads("".join(pieces))
    assert set(reply) == {"passage", "answer"} and isinstance(reply["passage"], int), reply
    assert "country" in a.answer.lower()


def test_the_cli_asks_the_server_and_prints_the_checked_answer(server, sample_library):
    env = {**os.environ, "EARMARK_LLM": "openai", "EARMARK_LLM_BASE_URL": server, "EARMARK_LLM_MODEL": "local",
           "EARMARK_LIBRARY": str(sample_library.root)}
    run = subprocess.run([sys.executable, "-m", "pipeline", "ask", QUESTION, "--json"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout)
    assert out["found"] and out["citations"][0]["file"] == "jfk-inaugural-1961-excerpt.flac"


def test_a_server_that_is_down_is_one_line_naming_it(sample_library):
    down = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    env = {**os.environ, "EARMARK_LLM": "openai", "EARMARK_LLM_BASE_URL": down, "EARMARK_LLM_MODEL": "local",
           "EARMARK_LIBRARY": str(sample_library.root)}
    run = subprocess.run([sys.executable, "-m", "pipeline", "ask", QUESTION], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 2, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert lines[0].startswith(f"earmark: the openai model server at {down} is unreachable"), lines[0]
    assert "EARMARK_LLM_BASE_URL" in lines[0]


def test_a_server_slower_than_the_timeout_is_one_error_not_a_hang(server, sample_library, embedder):
    t = time.monotonic()
    with pytest.raises(LLMError, match=r"did not answer within 0\.2 s \(EARMARK_LLM_TIMEOUT\)"):
        ask(sample_library, embedder, QUESTION, _options(server, timeout=0.2))
    assert time.monotonic() - t < 60  # two tries of 0.2 s, plus the retrieval before them
