"""Convert a CTranslate2 Whisper ``model.bin`` into an openai-whisper checkpoint.

Why by hand: the only Whisper weights that install offline here ship in CTranslate2 (faster-whisper)
format, and no maintained library converts CTranslate2 back to openai-whisper (converters go the
other way: openai/transformers -> CTranslate2). The format is small and stable, so ~150 lines do it.

Format facts (CTranslate2 binary version 6, all little-endian):
  u32 version, string spec name, u32 revision, u32 variable count, then per variable:
  string name, u8 rank, rank x u32 dims, u8 dtype id, u32 byte count, raw data;
  then u32 alias count and (alias, target) string pairs. A string is a u16 length (counting its NUL)
  followed by the bytes and a NUL. dtype ids: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16,
  5 bfloat16. Scalars (``encoder/num_heads``) have rank 0.

Name mapping: CT2 fuses the self-attention query/key/value into ``linear_0`` (rows stacked q, k, v;
the key third of the bias is zeros because Whisper's key projection has no bias) and the
cross-attention key/value into ``attention/linear_1``; layer norms are gamma/beta.
The result is ``{"dims": {...}, "model_state_dict": {...}}`` saved with ``torch.save`` in float16, as
openai's own checkpoints are; ``whisper.load_model`` copies it into float32 parameters on CPU.
"""

from __future__ import annotations

import logging
import re
import struct
from pathlib import Path
from typing import IO, Any

from .errors import ModelIntegrityError

log = logging.getLogger(__name__)

SUPPORTED_BINARY_VERSION = 6
# numpy dtype names by CT2 dtype id; bfloat16 has no numpy type and is widened by hand.
_DTYPES = {0: "<f4", 1: "<i1", 2: "<i2", 3: "<i4", 4: "<f2", 5: "<u2"}
_BFLOAT16 = 5


class _Reader:
    """Sequential little-endian reads over the bytes of a model.bin."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def unpack(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def string(self) -> str:
        (length,) = self.unpack("H")
        raw = self.data[self.pos : self.pos + length]
        self.pos += length
        return raw.rstrip(b"\0").decode("utf-8")

    def array(self, dtype_id: int, shape: tuple[int, ...], nbytes: int):
        import numpy as np

        if dtype_id not in _DTYPES:
            raise ModelIntegrityError(f"model.bin has unknown dtype id {dtype_id}: not a CTranslate2 model")
        dtype = np.dtype(_DTYPES[dtype_id])
        arr = np.frombuffer(self.data, dtype=dtype, count=nbytes // dtype.itemsize, offset=self.pos)
        self.pos += nbytes
        if dtype_id == _BFLOAT16:  # bfloat16 is the top half of a float32
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        return arr.reshape(shape)


def read_ct2(path: Path) -> dict[str, Any]:
    """Read every variable of a CTranslate2 ``model.bin`` as numpy arrays, aliases resolved."""
    try:
        return _read_ct2(Path(path))
    except (struct.error, ValueError, KeyError) as e:  # a truncated or foreign file runs off its own end
        raise ModelIntegrityError(f"{path} is truncated or not a CTranslate2 model: {e}") from e


def _read_ct2(path: Path) -> dict[str, Any]:
    r = _Reader(path.read_bytes())
    (version,) = r.unpack("I")
    if version != SUPPORTED_BINARY_VERSION:
        raise ModelIntegrityError(
            f"{path} is CTranslate2 binary version {version}; "
            f"only version {SUPPORTED_BINARY_VERSION} is supported"
        )
    spec, (revision,), (count,) = r.string(), r.unpack("I"), r.unpack("I")
    log.debug("reading %s: spec %s revision %s, %s variables", path, spec, revision, count)
    variables: dict[str, Any] = {}
    for _ in range(count):
        name = r.string()
        (rank,) = r.unpack("B")
        shape = r.unpack(f"{rank}I") if rank else ()
        dtype_id, nbytes = r.unpack("BI")
        variables[name] = r.array(dtype_id, shape, nbytes)
    (n_aliases,) = r.unpack("I")
    for _ in range(n_aliases):
        alias, target = r.string(), r.string()
        variables[alias] = variables[target]
    if r.pos != len(r.data):
        raise ModelIntegrityError(f"{path} has {len(r.data) - r.pos} trailing bytes: not a CTranslate2 model")
    return variables


def _reject_quantized(variables: dict[str, Any]) -> None:
    """Quantized weights carry per-row scales that openai-whisper has no place for."""
    scaled = [n for n in variables if n.endswith("weight_scale")]
    integer = [n for n, v in variables.items() if n.endswith("weight") and v.dtype.kind in "iu"]
    if scaled or integer:
        raise ModelIntegrityError(
            f"the CTranslate2 model is quantized ({(scaled or integer)[0]}); "
            "convert from a float16 or float32 model"
        )


def _attention(v: dict[str, Any], src: str, dst: str, fused: str) -> dict[str, Any]:
    """Map one CT2 attention block; ``fused`` is "qkv" (self) or "kv" (cross)."""
    import numpy as np

    if fused == "qkv":
        q_w, k_w, v_w = np.split(v[f"{src}/linear_0/weight"], 3, axis=0)
        q_b, k_b, v_b = np.split(v[f"{src}/linear_0/bias"], 3, axis=0)
        out = _linear(v, f"{src}/linear_1", f"{dst}.out")
    else:
        q_w, q_b = v[f"{src}/linear_0/weight"], v[f"{src}/linear_0/bias"]
        k_w, v_w = np.split(v[f"{src}/linear_1/weight"], 2, axis=0)
        k_b, v_b = np.split(v[f"{src}/linear_1/bias"], 2, axis=0)
        out = _linear(v, f"{src}/linear_2", f"{dst}.out")
    if np.any(k_b):  # Whisper's key projection has no bias; a non-zero one would be silently lost
        raise ModelIntegrityError(f"{src} has a non-zero key bias; this is not a Whisper model")
    out.update({f"{dst}.query.weight": q_w, f"{dst}.query.bias": q_b, f"{dst}.key.weight": k_w})
    out.update({f"{dst}.value.weight": v_w, f"{dst}.value.bias": v_b})
    return out


def _norm(v: dict[str, Any], src: str, dst: str) -> dict[str, Any]:
    return {f"{dst}.weight": v[f"{src}/gamma"], f"{dst}.bias": v[f"{src}/beta"]}


def _linear(v: dict[str, Any], src: str, dst: str) -> dict[str, Any]:
    return {f"{dst}.weight": v[f"{src}/weight"], f"{dst}.bias": v[f"{src}/bias"]}


def _block(v: dict[str, Any], src: str, dst: str, cross: bool) -> dict[str, Any]:
    """One residual block: self-attention, optional cross-attention, MLP."""
    sd = _attention(v, f"{src}/self_attention", f"{dst}.attn", "qkv")
    sd |= _norm(v, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
    if cross:
        sd |= _attention(v, f"{src}/attention", f"{dst}.cross_attn", "kv")
        sd |= _norm(v, f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln")
    sd |= _linear(v, f"{src}/ffn/linear_0", f"{dst}.mlp.0")
    sd |= _linear(v, f"{src}/ffn/linear_1", f"{dst}.mlp.2")
    sd |= _norm(v, f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")
    return sd


def _n_layers(v: dict[str, Any], stack: str) -> int:
    pattern = re.compile(rf"^{stack}/layer_(\d+)/")
    return 1 + max(int(m.group(1)) for n in v if (m := pattern.match(n)))


def state_dict_and_dims(v: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
    """Map CT2 Whisper variables to openai-whisper state-dict arrays and ``ModelDimensions`` fields."""
    _reject_quantized(v)
    n_audio_layer, n_text_layer = _n_layers(v, "encoder"), _n_layers(v, "decoder")
    sd = _linear(v, "encoder/conv1", "encoder.conv1") | _linear(v, "encoder/conv2", "encoder.conv2")
    sd["encoder.positional_embedding"] = v["encoder/position_encodings/encodings"]
    for i in range(n_audio_layer):
        sd |= _block(v, f"encoder/layer_{i}", f"encoder.blocks.{i}", cross=False)
    sd |= _norm(v, "encoder/layer_norm", "encoder.ln_post")
    sd["decoder.token_embedding.weight"] = v["decoder/embeddings/weight"]
    sd["decoder.positional_embedding"] = v["decoder/position_encodings/encodings"]
    for i in range(n_text_layer):
        sd |= _block(v, f"decoder/layer_{i}", f"decoder.blocks.{i}", cross=True)
    sd |= _norm(v, "decoder/layer_norm", "decoder.ln")
    audio_ctx, audio_state = sd["encoder.positional_embedding"].shape
    text_ctx, text_state = sd["decoder.positional_embedding"].shape
    dims = {  # plain ints: whisper.load_model reads the checkpoint with weights_only=True
        "n_mels": int(sd["encoder.conv1.weight"].shape[1]),
        "n_vocab": int(sd["decoder.token_embedding.weight"].shape[0]),
        "n_audio_ctx": int(audio_ctx),
        "n_audio_state": int(audio_state),
        "n_audio_head": int(v["encoder/num_heads"]),
        "n_audio_layer": n_audio_layer,
        "n_text_ctx": int(text_ctx),
        "n_text_state": int(text_state),
        "n_text_head": int(v.get("decoder/num_heads", v["encoder/num_heads"])),
        "n_text_layer": n_text_layer,
    }
    return sd, dims


def convert(model_bin: Path, out: IO[bytes]) -> dict[str, int]:
    """Convert a CT2 Whisper ``model.bin`` and ``torch.save`` the checkpoint to ``out``; returns dims.

    The state dict is loaded strictly into a fresh ``whisper.model.Whisper`` first, so a checkpoint
    that would not load is never written.
    """
    import numpy as np
    import torch
    from whisper.model import ModelDimensions, Whisper

    try:
        sd_np, dims = state_dict_and_dims(read_ct2(model_bin))
    except (KeyError, ValueError) as e:  # a missing variable or layer: another architecture
        raise ModelIntegrityError(f"{model_bin} is not a CTranslate2 Whisper model (missing {e})") from e
    # np.array copies: torch warns on the read-only views np.frombuffer returns.
    sd = {k: torch.from_numpy(np.array(a, dtype=np.float16)) for k, a in sd_np.items()}
    try:
        Whisper(ModelDimensions(**dims)).load_state_dict(sd, strict=True)
    except RuntimeError as e:
        first_line = str(e).strip().splitlines()[0]
        raise ModelIntegrityError(f"converted {model_bin} does not fit openai-whisper: {first_line}") from e
    torch.save({"dims": dims, "model_state_dict": sd}, out)
    log.info("converted %s: %s", model_bin, dims)
    return dims
