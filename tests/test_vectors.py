"""The passage index (vectors.py) on a real embedded Chroma: it centres its vectors on their mean once it
holds CENTRE_AT passages (taken once from what is stored, kept with the vectors, applied to every vector
stored after and to every question, safe to kill mid-way: the next write finishes it, nothing is centred
twice), and it searches its graph EF_SEARCH candidates wide, an index made by an older earmark too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pipeline import vectors
from pipeline.records import Passage
from pipeline.vectors import PassageIndex

from .conftest import REAL


def _sentences() -> list[str]:
    """Sentences of the real recordings' reference transcripts (English ones, one per line)."""
    out = []
    for name in ("jfk-inaugural-1961-excerpt.txt", "librispeech-1272-128104-0000.txt",
                 "ami-meeting-excerpt-4spk-60s.txt"):
        path = REAL / name
        if not path.exists():
            pytest.skip(f"{path} not present (the shared evaluation data sits beside the checkout)")
        out += [s.strip() for s in path.read_text().replace("\n", " ").split(".") if len(s.split()) >= 4]
    return out


def _passages(file_no: int, texts: list[str]) -> list[Passage]:
    h = f"{file_no:02d}" * 32
    return [Passage(id=f"{h[:16]}:{i}", file_hash=h, file_name=f"f{file_no}.wav", start=10.0 * i, end=10.0 * i + 9,
                    text=t, segment_ids=(i,), language="en") for i, t in enumerate(texts)]


def _stored(index: PassageIndex) -> dict[str, np.ndarray]:
    got = index.collection.get(include=["embeddings"])
    return dict(zip(got["ids"], np.asarray(got["embeddings"], dtype=np.float32)))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _setup(tmp_path, embedder, monkeypatch, centre_at: int, n: int):
    """An empty index that centres at `centre_at` passages, and n real sentences with their vectors."""
    monkeypatch.setattr(vectors, "CENTRE_AT", centre_at)
    texts = _sentences()[:n]
    return PassageIndex(tmp_path / "chroma", embedder.name), texts, embedder.embed(texts)


def test_vectors_are_stored_as_they_are_until_centre_at_then_all_less_their_mean(tmp_path, embedder, monkeypatch):
    index, texts, raw = _setup(tmp_path, embedder, monkeypatch, 8, 12)
    index.replace_file("00" * 32, _passages(0, texts[:5]), raw[:5])
    assert index.centre is None
    stored = _stored(index)
    assert all(np.allclose(stored[p.id], raw[i], atol=1e-6) for i, p in enumerate(_passages(0, texts[:5])))

    index.replace_file("01" * 32, _passages(1, texts[5:9]), raw[5:9])  # 9 passages: past CENTRE_AT
    mean = raw[:9].mean(axis=0)
    assert np.allclose(index.centre, mean, atol=1e-6)
    stored = _stored(index)
    for i, p in enumerate(_passages(0, texts[:5]) + _passages(1, texts[5:9])):
        assert np.allclose(stored[p.id], _unit(raw[i] - mean), atol=1e-5), p.id
    assert index.collection.metadata["centring"] == "done"

    # The centre is kept: a later file, and the same index opened again, use it, not a new mean.
    again = PassageIndex(tmp_path / "chroma", embedder.name)
    assert np.array_equal(again.centre, index.centre)
    again.replace_file("02" * 32, _passages(2, texts[9:12]), raw[9:12])
    assert np.array_equal(again.centre, index.centre)
    stored = _stored(again)
    for i, p in enumerate(_passages(2, texts[9:12])):
        assert np.allclose(stored[p.id], _unit(raw[9 + i] - mean), atol=1e-5)

    # A question is compared centred too: the scores are the centred cosines.
    q = embedder.embed_query("What did the president ask his fellow citizens to do?")
    hits = again.query(q, 12)
    want = {p.id: float(_unit(raw[i] - mean) @ _unit(q - mean))
            for i, p in enumerate(_passages(0, texts[:5]) + _passages(1, texts[5:9]) + _passages(2, texts[9:12]))}
    assert [h.passage_id for h in hits] == sorted(want, key=lambda k: -want[k])
    assert all(abs(h.score - want[h.passage_id]) < 1e-4 for h in hits)


def test_a_reader_opened_before_another_process_centred_the_index_compares_centred(tmp_path, embedder, monkeypatch):
    writer, texts, raw = _setup(tmp_path, embedder, monkeypatch, 4, 6)
    writer.replace_file("00" * 32, _passages(0, texts[:2]), raw[:2])
    reader = PassageIndex(tmp_path / "chroma", embedder.name)  # a running server's, opened now
    reads, get_collection = [], reader.client.get_collection
    monkeypatch.setattr(reader.client, "get_collection", lambda *a, **k: reads.append(1) or get_collection(*a, **k))
    q = embedder.embed_query("a question")
    reader.query(q, 2), reader.query(q, 2)
    assert reads == []  # no centre yet, and no read of the collection's metadata per query (a server's round trip)
    writer.replace_file("01" * 32, _passages(1, texts[2:6]), raw[2:6])
    assert writer.centre is not None and reader.centre is None
    assert [h.passage_id for h in reader.query(q, 6)] == [h.passage_id for h in writer.query(q, 6)]
    assert np.array_equal(reader.centre, writer.centre) and reads == [1]


KILLED = r"""
import sys, numpy as np
from pipeline import vectors
from pipeline.records import Passage
vectors.CENTRE_AT, vectors.CENTRE_BATCH = 10, 3
raw = np.load(sys.argv[2])
index = vectors.PassageIndex(sys.argv[1], "m")
for f in range(4):
    h = f"{f:02d}" * 32
    index.replace_file(h, [Passage(id=f"{h[:16]}:{i}", file_hash=h, file_name=f"f{f}.wav", start=i, end=i + 1,
                                   text=f"passage {f} {i}", segment_ids=(i,), language="en") for i in range(3)],
                       raw[3 * f:3 * f + 3])
"""


def test_a_kill_9_while_the_vectors_are_centred_is_finished_by_the_next_write_and_centres_none_twice(tmp_path):
    rng = np.random.default_rng(7)
    raw = _unit(rng.normal(size=(15, 16)).astype(np.float32) + 2.0)  # one shared direction, as e5's
    np.save(tmp_path / "raw.npy", raw)
    trace = tmp_path / "trace"
    env = {**os.environ, "EARMARK_TRACE": str(trace), "EARMARK_TRACE_PAUSE": "centre-chroma:30"}
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(tmp_path / "chroma"), str(tmp_path / "raw.npy")],
                            env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        # The 12 passages are centred 3 at a time; held at the second page, the first is rewritten.
        while not (trace.exists() and trace.read_text().count("centre-chroma point") >= 2):
            assert proc.poll() is None and time.monotonic() < deadline, "the writer never reached the centring"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    index = PassageIndex(tmp_path / "chroma", "m")
    mean = raw[:12].mean(axis=0)
    assert np.allclose(index.centre, mean, atol=1e-6)
    assert index.collection.metadata["centring"] == "pending"
    half = _stored(index)
    assert sum(np.allclose(half[f"{f:02d}" * 8 + f":{i}"], raw[3 * f + i], atol=1e-6)
               for f in range(4) for i in range(3)) == 9  # 3 were rewritten before the kill, 9 not

    index.replace_file("04" * 32, [], raw[:0])  # the next write (here: a recording with no passages)
    assert index.collection.metadata["centring"] == "done"
    stored = _stored(index)
    assert len(stored) == 12
    for f in range(4):
        for i in range(3):
            assert np.allclose(stored[f"{f:02d}" * 8 + f":{i}"], _unit(raw[3 * f + i] - mean), atol=1e-5)


def test_an_index_searches_ef_search_wide_by_cosine_one_made_by_an_older_earmark_too(tmp_path):
    import chromadb
    from chromadb.config import Settings

    old = chromadb.PersistentClient(path=str(tmp_path / "old"), settings=Settings(anonymized_telemetry=False))
    made = old.get_or_create_collection(vectors.COLLECTION, embedding_function=None,
                                        metadata={"hnsw:space": "cosine", "embed_model": "m"})  # as before
    assert made.configuration["hnsw"]["ef_search"] < vectors.EF_SEARCH
    rng = np.random.default_rng(3)
    raw = _unit(rng.normal(size=(4, 8)).astype(np.float32))
    for where in ("old", "new"):
        index = PassageIndex(tmp_path / where, "m")
        assert index.collection.configuration["hnsw"]["ef_search"] == vectors.EF_SEARCH
        assert index.collection.configuration["hnsw"]["space"] == "cosine"
        index.replace_file("00" * 32, _passages(0, ["a", "b", "c", "d"]), raw)
        q = _unit(rng.normal(size=8).astype(np.float32))
        hits = index.query(q, 4)
        assert sorted(round(h.score, 4) for h in hits) == sorted(round(float(v @ q), 4) for v in raw)
