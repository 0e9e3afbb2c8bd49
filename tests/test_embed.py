"""The packaged embedders, loaded offline: the multilingual search embedder and the MiniLM judge."""

import numpy as np
import pytest

from pipeline.config import EmbedOptions
from pipeline.embed import E5Embedder, load


@pytest.fixture(scope="module")
def e5():
    return load(EmbedOptions(model="multilingual-e5-small"))


def test_e5_loads_from_its_package_with_the_hub_off_and_gives_unit_vectors(e5, monkeypatch):
    import os

    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # set by conftest, as for every test
    assert isinstance(e5, E5Embedder) and e5.dim == 384
    vecs = e5.embed(["Ask not what your country can do for you.", "Pregúntate qué puedes hacer tú."])
    assert vecs.shape == (2, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-3)
    assert e5.embed([]).shape == (0, 384)


def test_a_query_is_embedded_as_a_query_not_as_a_passage(e5):
    text = "what colour is the sand"
    q, p = e5.embed_query(text), e5.embed([text])[0]
    assert 0.8 < float(q @ p) < 0.999  # e5's "query: " and "passage: " prefixes: close, not the same


def test_an_english_question_finds_spanish_speech_without_a_translation(e5):
    passages = ["Son arenas blanquecinas de grano medio, con algo de arcilla.",  # Spanish, the answer
                "The blind man counted his old coins.",
                "Mr. Quilter is the apostle of the middle classes."]
    scores = e5.embed(passages) @ e5.embed_query("What colour are the sands?")
    assert int(np.argmax(scores)) == 0
    minilm = load(EmbedOptions(model="all-MiniLM-L6-v2"))
    plain = minilm.embed(passages) @ minilm.embed_query("What colour are the sands?")
    assert scores[0] - max(scores[1:]) > plain[0] - max(plain[1:])  # why it is the search default


def test_e5_embeds_many_passages_in_small_batches_with_the_same_vectors_in_order(e5, monkeypatch):
    """A long recording's passages go to the engine batch_size at a time (its activations for one
    call set the ingest's peak memory); the vectors are those of one big call, row for row."""
    texts = [f"Passage {i}: the sand here is {'white' if i % 2 else 'grey'} and coarse, {i} metres deep."
             for i in range(2 * e5.batch_size + 3)]
    whole = np.asarray(e5.model.passage(texts), dtype=np.float32)
    calls: list[int] = []
    real_passage = e5.model.passage
    monkeypatch.setattr(e5.model, "passage", lambda batch: calls.append(len(batch)) or real_passage(batch))
    vecs = e5.embed(texts)
    assert calls == [e5.batch_size, e5.batch_size, 3]
    assert vecs.shape == whole.shape and np.allclose(vecs, whole, atol=1e-6)
