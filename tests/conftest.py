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


# The Spanish clip as Whisper base transcribed it (its words and times) and an English translation in
# three pieces as it wrote it on the machine these tests were written on. Whisper's translation of this
# clip changes with the CPU it runs on ("of medium grain" there, "the green is medium" on an AVX2-only
# EPYC), and the tests that read it are about how earmark checks an answer against two renderings,
# not about Whisper: they read this transcript, ingested through the real store, index and embedder.
SPANISH_SPOKEN = [(0.628, 4.508, "las arenas son blancasinas de grano medio",
                   [(0.628, 1.048), (1.048, 1.508), (1.508, 1.808), (1.808, 2.768), (2.768, 3.728), (3.728, 4.048),
                    (4.048, 4.508)]),
                  (5.072, 7.712, "y tiene muy poca cistercia.",
                   [(5.072, 5.652), (5.652, 5.872), (5.872, 6.292), (6.292, 6.732), (6.732, 7.712)])]
SPANISH_ENGLISH = [(0.628, 2.628, "The sands are white and fine,"), (2.628, 4.628, "of middle grain,"),
                   (5.072, 8.072, "and it has very little cistercia.")]


@pytest.fixture(scope="session")
def spanish_written(tmp_path_factory, embedder):
    """A library of the Spanish clip with the transcript above (SPANISH_SPOKEN, SPANISH_ENGLISH) beside two
    English clips transcribed as usual; read-only."""
    from pipeline.audio import sha256_file
    from pipeline.records import Segment, Transcript, Word
    from pipeline.store import Library

    root = tmp_path_factory.mktemp("spanish-written")
    audio = root / "picovoice-leopard-test-es.wav"
    shutil.copy(real(audio.name), audio)

    def segment(k, start, end, text, times=None, language="es"):
        words = tuple(Word(a, b, f" {w}", 0.9) for (a, b), w in zip(times, text.split())) if times else ()
        return Segment(k, start, end, text, words, language, -0.3, 0.01, 1.1, speaker="SPEAKER_1" if times else None)
    transcript = Transcript(sha256_file(audio), audio.name, 8.664,
                            tuple(segment(k, *s) for k, s in enumerate(SPANISH_SPOKEN)), {"name": "base"},
                            "2026-12-08T00:00:00+00:00",
                            tuple(segment(k, a, b, t, language="en") for k, (a, b, t) in enumerate(SPANISH_ENGLISH)))
    lib = Library(root / "library", embedder.name)
    lib.save_transcript(transcript)  # ingest catalogues and indexes a saved transcript, as after a kill
    lib.close()
    return _ingested(root / "library", embedder, [audio, SAMPLES / "jfk-inaugural-1961-excerpt.flac",
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
