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


# ---------------------------------------------------------------- the MiniLM judge, without torch


def test_the_judge_runs_on_onnxruntime_with_the_vectors_sentence_transformers_gives():
    """The judge's thresholds were set on sentence-transformers' vectors: the ONNX export must give the
    same ones, for short, empty, batched (padded) and over-long (cut at 256 tokens) texts alike."""
    from sentence_transformers import SentenceTransformer

    from pipeline.embed import OnnxEmbedder
    from pipeline.models import embedder_path

    judge = load(EmbedOptions(model="all-MiniLM-L6-v2"))
    assert isinstance(judge, OnnxEmbedder) and judge.dim == 384
    texts = ["Where does the first speaker on the call live?", "Also, I'm in New Jersey now though.", "",
             "The sand is white. " * 120] + [f"Sentence {i} of a batch larger than one." for i in range(40)]
    reference = SentenceTransformer(str(embedder_path("all-MiniLM-L6-v2")), device="cpu").encode(
        texts, normalize_embeddings=True, convert_to_numpy=True)
    vecs = judge.embed(texts)
    assert vecs.shape == reference.shape and vecs.dtype == np.float32
    assert np.abs(vecs - reference).max() < 1e-5
    assert np.abs(judge.embed_query(texts[0]) - reference[0]).max() < 1e-5
    assert judge.embed([]).shape == (0, 384)


def test_the_judge_pads_each_batch_little_and_remembers_what_it_read(monkeypatch):
    """One long passage among short sentences is a batch of its own (no row padded to its length), and
    a text read again within a question is not run through the model again: same vectors either way."""
    from pipeline.embed import OnnxEmbedder

    judge = load(EmbedOptions(model="all-MiniLM-L6-v2"))
    judge.memo.clear()
    widths = []
    run = judge.model.run
    monkeypatch.setattr(judge, "model", type("Spy", (), {"run": lambda self, out, feed: widths.append(
        feed["input_ids"].shape) or run(out, feed)})())
    short = [f"Short sentence number {i}." for i in range(6)]
    texts = ["The sand is white and the sea is warm. " * 20] + short
    vecs = judge.embed(texts)
    assert len(widths) == 2 and widths[1][0] == 6 and widths[1][1] < 16, widths  # the six short ones together
    alone = np.stack([OnnxEmbedder.embed(judge, [t]) for t in texts])[:, 0]  # (remembered: no new runs)
    assert len(widths) == 2 and np.abs(vecs - alone).max() == 0
    again = judge.embed([short[0], "A sentence not read before."])
    assert len(widths) == 3 and widths[2][0] == 1 and np.abs(again[0] - vecs[1]).max() == 0


def test_a_fresh_process_loads_the_judge_without_importing_torch():
    """What a cold `earmark ask` pays for the judge: no torch, no sentence-transformers (4.6 of its
    13.8 s before, eval/results/cli-speed). The export exists by now (the test above made it if needed)."""
    import subprocess
    import sys

    load(EmbedOptions(model="all-MiniLM-L6-v2"))
    code = ("import sys; from pipeline.embed import load; from pipeline.config import EmbedOptions; "
            "v = load(EmbedOptions(model='all-MiniLM-L6-v2')).embed_query('hello'); "
            "print(len(v), [m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "384 []"


def test_a_model_the_graph_cannot_compute_stays_on_sentence_transformers(tmp_path):
    """Only a Transformer with mean pooling and unit length is exported; a CLS-pooled model is not."""
    import json
    import shutil

    from pipeline.models import embedder_path
    from pipeline.onnx_convert import exportable

    source = embedder_path("all-MiniLM-L6-v2")
    assert exportable(source)
    copy = tmp_path / "cls-pooled"
    shutil.copytree(source, copy)
    pooling = json.loads((copy / "1_Pooling" / "config.json").read_text())
    (copy / "1_Pooling" / "config.json").write_text(json.dumps(
        {**pooling, "pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}))
    assert not exportable(copy)
    assert not exportable(tmp_path)  # no model at all
    assert type(load(EmbedOptions(model=str(copy)))).__name__ == "Embedder"  # sentence-transformers


def test_without_the_onnx_package_the_export_gives_up_before_loading_torch():
    """The export needs `onnx` (the models extra): where it is missing, that is found before torch and
    the encoder load (seconds), and the judge goes to sentence-transformers straight away."""
    import subprocess
    import sys

    code = ("import io, sys; sys.modules['onnx'] = None\n"
            "from pipeline.models import embedder_path\nfrom pipeline.onnx_convert import export\n"
            "try:\n    export(embedder_path('all-MiniLM-L6-v2'), io.BytesIO())\n"
            "except ImportError:\n    print('torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False", done.stdout + done.stderr
