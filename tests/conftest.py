"""Shared fixtures: offline models in a per-session cache, a temp library per test, real audio."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
# The shared evaluation recordings sit beside the checkout (../shared/data/real).
REAL = Path(os.environ.get("EARMARK_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))

# Set before anything imports the pipeline: no hub, and a models cache of this session's own.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["EARMARK_MODELS_DIR"] = tempfile.mkdtemp(prefix="earmark-test-models-")
# The assembled models are up to 1.4 GB: a test run that left them behind would fill /tmp run by run.
atexit.register(shutil.rmtree, os.environ["EARMARK_MODELS_DIR"], ignore_errors=True)


def real(name: str) -> Path:
    """A recording from ../shared/data/real; the test is skipped if that folder is absent."""
    path = REAL / name
    if not path.exists():
        pytest.skip(f"{path} not present (the shared evaluation data sits beside the checkout)")
    return path


@pytest.fixture(autouse=True)
def _own_library(tmp_path, monkeypatch):
    """Each test gets an empty library of its own unless it asks for a shared one."""
    monkeypatch.setenv("EARMARK_LIBRARY", str(tmp_path / "library"))


@pytest.fixture(scope="session")
def embedder():
    """The search embedder, as a new library gets it."""
    from pipeline.embed import load

    return load()


@pytest.fixture(scope="session")
def judge():
    """The sentence-similarity model ask judges relevance and support with."""
    from pipeline.config import AnswerOptions, EmbedOptions
    from pipeline.embed import load

    return load(EmbedOptions(model=AnswerOptions().support_model))


@pytest.fixture(scope="session")
def sample_library(tmp_path_factory, embedder):
    """A library built once per session from a few real clips; tests must only read it."""
    files = [SAMPLES / "jfk-inaugural-1961-excerpt.flac", SAMPLES / "librispeech-1995-1837-0001.wav",
             SAMPLES / "librispeech-2412-153948-0000.flac"]
    if (REAL / "pyannote-sample-phonecall-2spk.wav").exists():
        files.append(REAL / "pyannote-sample-phonecall-2spk.wav")
    return _ingested(tmp_path_factory.mktemp("sample-library"), embedder, files)


@pytest.fixture(scope="session")
def spanish_library(tmp_path_factory, embedder):
    """A library of a Spanish clip (transcribed and translated) beside two English ones; read-only."""
    return _ingested(tmp_path_factory.mktemp("spanish-library"), embedder,
                     [real("picovoice-leopard-test-es.wav"), SAMPLES / "jfk-inaugural-1961-excerpt.flac",
                      SAMPLES / "librispeech-1995-1837-0001.wav"])


def _ingested(root: Path, embedder, files: list[Path]):
    """A library at root with files ingested, none failed."""
    from pipeline.ingest import ingest
    from pipeline.store import Library

    lib = Library(root, embedder.name)
    report = ingest(lib, embedder, files)
    assert not report.failed, report.failed
    return lib


@pytest.fixture
def run_cli(capsys, monkeypatch):
    """Run the real `earmark` entry point in-process; returns (exit code, stdout, stderr)."""
    from pipeline.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["earmark", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def clips_dir(tmp_path) -> Path:
    """A folder with two short real clips (copied, so tests may add files beside them)."""
    d = tmp_path / "clips"
    d.mkdir()
    for name in ("librispeech-1272-128104-0000.wav", "jfk-inaugural-1961-excerpt.flac"):
        shutil.copy(SAMPLES / name, d / name)
    return d


@contextmanager
def server_process(command: list[str], ready_url: str, log: Path, seconds: float = 120):
    """A real server (llama_cpp.server, chroma run) started for tests: yields once ``ready_url`` answers
    200, with its output in ``log``; a server that exits or never answers fails with the log's end."""
    with open(log, "w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + seconds
        while True:
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                urllib.request.urlopen(ready_url, timeout=5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"{command[0]} did not start: " + log.read_text()[-2000:]
                time.sleep(0.3)
        yield proc
    finally:
        proc.terminate()
        proc.wait(30)
