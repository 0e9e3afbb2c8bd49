"""Ingest on a real Ray cluster of two nodes on this machine (`ray start --head` and `ray start --address`,
on 127.0.0.1, started here): the library equals a local ingest's; a worker node killed mid-ingest
loses nothing and stores nothing twice; no cluster is one line. Nothing is mocked."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from earmark_eval.ray_nodes import head_args, kill, node, running_tasks, wait_nodes
from earmark_eval.reliability.server import free_port

from .conftest import REAL, SAMPLES

pytest.importorskip("ray")

EARMARK = Path(sys.executable).with_name("earmark")
FILES = [SAMPLES / "jfk-inaugural-1961-excerpt.flac", SAMPLES / "librispeech-1995-1837-0001.wav",
         SAMPLES / "librispeech-2412-153948-0000.flac", REAL / "picovoice-leopard-test-es.wav"]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    logs = tmp_path_factory.mktemp("ray")
    port = free_port()
    address = f"127.0.0.1:{port}"
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    try:
        with node(head_args(port, temp), logs / "head.log"):
            wait_nodes(address, 1)
            with node(["--address", address, "--node-ip-address", "127.0.0.1"], logs / "node2.log"):
                wait_nodes(address, 2)
                yield address
    finally:
        shutil.rmtree(temp, ignore_errors=True)  # the cluster's session files and object spill


def _earmark(library: Path, *args, env: dict | None = None, **popen) -> subprocess.CompletedProcess:
    env = {**os.environ, "EARMARK_DIARIZE": "0", **(env or {})}
    return subprocess.run([str(EARMARK), "--library", str(library), "ingest", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=900, **popen)


def _library(root: Path) -> dict:
    """What a library holds, in a form two libraries can be compared by."""
    with sqlite3.connect(root / "catalog.sqlite") as db:
        recordings = sorted(db.execute("SELECT sha256, file_name, status, passages, duration FROM recordings"))
        passages = sorted(db.execute("SELECT passage_id, file_hash, start, end, text FROM passages"))
        db.execute("INSERT INTO passages_fts (passages_fts, rank) VALUES ('integrity-check', 1)")
    transcripts = {}
    for f in sorted((root / "transcripts").glob("*.json")):
        t = json.loads(f.read_text())
        transcripts[f.name] = [(s["text"], s["start"], s["end"], s["language"]) for s in t["segments"]]
    return {"recordings": recordings, "passages": passages, "transcripts": transcripts}


def _vectors(root: Path) -> dict:
    """Each passage's vector in the library's Chroma collection."""
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(path=str(root / "chroma"), settings=Settings(anonymized_telemetry=False))
    got = client.get_collection("passages").get(include=["embeddings"])
    return dict(zip(got["ids"], got["embeddings"]))


def _same_vectors(a: dict, b: dict) -> bool:
    import numpy as np

    return a.keys() == b.keys() and all(np.allclose(a[k], b[k], atol=1e-5) for k in a)


@pytest.fixture(scope="module")
def local_root(tmp_path_factory):
    """The same files ingested here, one thread per file as each Ray task runs them: a worker of one
    thread, and OpenMP told so, as Ray tells its workers (OMP_NUM_THREADS=1). On an AVX2-only EPYC
    Whisper's words depend on it ("the cotton itself, but" with the default of a thread per core,
    "the cotton itself but" with one), where on the machines before they did not."""
    root = tmp_path_factory.mktemp("local") / "library"
    run = _earmark(root, *FILES, "--jobs", "2", env={"OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr
    return root


@pytest.fixture(scope="module")
def local_library(local_root):
    return _library(local_root)


def test_ingest_on_a_two_node_cluster_makes_the_library_a_local_ingest_makes(ray_cluster, local_library, local_root,
                                                                             tmp_path):
    root = tmp_path / "library"
    run = _earmark(root, *FILES, "--ray", ray_cluster, "-v")
    assert run.returncode == 0, run.stderr
    assert "on the Ray cluster at" in run.stderr and "(2 node(s))" in run.stderr
    assert f"{len(FILES)} ingested, 0 skipped, 0 failed" in run.stdout
    assert _library(root) == local_library
    # The nodes embedded the passages too (the driver only stores), into the vectors a local ingest makes.
    assert run.stderr.count("transcribed and embedded on the cluster") == len(FILES)
    assert _same_vectors(_vectors(root), _vectors(local_root))
    # Ingested again through the cluster: nothing is sent, nothing stored twice.
    again = _earmark(root, *FILES, "--ray", ray_cluster)
    assert again.returncode == 0 and f"0 ingested, {len(FILES)} skipped, 0 failed" in again.stdout
    assert _library(root) == local_library
    assert sum(1 for line in (root / "audit.jsonl").read_text().splitlines()
               if json.loads(line)["event"] == "ingest") == len(FILES)


def test_a_worker_node_killed_mid_ingest_loses_nothing(ray_cluster, local_library, tmp_path):
    """A third node joins, takes tasks and is killed (SIGKILL, its raylet and workers with it) while
    they run: Ray runs them again on the nodes left, and the library is the local one, once."""
    root = tmp_path / "library"
    with node(["--address", ray_cluster, "--node-ip-address", "127.0.0.1"], tmp_path / "node3.log") as node3:
        wait_nodes(ray_cluster, 3)
        env = {**os.environ, "EARMARK_DIARIZE": "0"}
        driver = subprocess.Popen([str(EARMARK), "--library", str(root), "ingest", *map(str, FILES), "--ray",
                                   ray_cluster], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        # Killed once it runs a task, so that Ray must run that task again elsewhere.
        deadline = time.monotonic() + 300
        while not any("transcribe" in t for t in running_tasks(node3)):
            assert driver.poll() is None and time.monotonic() < deadline, "node 3 ran no task before the ingest ended"
            time.sleep(0.2)
        kill(node3)
        out, err = driver.communicate(timeout=900)
    assert driver.returncode == 0, err
    assert f"{len(FILES)} ingested, 0 skipped, 0 failed" in out, out
    assert _library(root) == local_library


def test_no_cluster_at_the_address_is_one_line(tmp_path):
    run = _earmark(tmp_path / "library", FILES[0], "--ray", f"127.0.0.1:{free_port()}")
    assert run.returncode != 0
    [line] = run.stderr.strip().splitlines()
    assert line.startswith("earmark: no Ray cluster at 127.0.0.1:") and "ray start --head" in line
