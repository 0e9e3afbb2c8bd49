"""Export a packaged sentence-transformers embedder to one ONNX graph, once, so that it runs without torch.

A cold `earmark ask` spent 4.6 of its 13.8 s importing torch and sentence-transformers for the MiniLM
judge alone (eval/results/cli-speed); onnxruntime and the `tokenizers` package load the same weights in
well under a second. The graph takes token ids and their attention mask and gives the unit-length,
mean-pooled vectors that sentence-transformers gives for the same model (equal to about 1e-7).

Why not sentence-transformers' own `backend="onnx"`: it loads through optimum and sentence-transformers,
so every start still imports torch, which is the cost this removes. The export itself needs torch
(installed for Whisper anyway) and the `onnx` package, and runs once per model into the models dir
(models.embedder_onnx).

Only models made of a Transformer, mean Pooling and Normalize are exported (as all-MiniLM-L6-v2 is);
`exportable` says which, and anything else keeps the sentence-transformers runtime.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import IO

_MODULES = ["sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
            "sentence_transformers.models.Normalize"]


def exportable(model_dir: Path) -> bool:
    """Whether the sentence-transformers model in ``model_dir`` is a Transformer with mean pooling and
    unit length, the one shape the exported graph computes."""
    try:
        modules = json.loads((model_dir / "modules.json").read_text())
        pooling = json.loads((model_dir / modules[1]["path"] / "config.json").read_text())
    except (OSError, ValueError, IndexError, KeyError):
        return False
    others = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v and k != "pooling_mode_mean_tokens"]
    return [m.get("type") for m in modules] == _MODULES and bool(pooling.get("pooling_mode_mean_tokens")) \
        and not others and (model_dir / "tokenizer.json").is_file()


def max_tokens(model_dir: Path) -> int:
    """The model's input length in tokens: longer texts are cut there, as sentence-transformers cuts them."""
    try:
        return int(json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"])
    except (OSError, ValueError, KeyError):
        return 512


def export(model_dir: Path, out: IO[bytes]) -> None:
    """Write the ONNX graph of the model in ``model_dir`` (see `exportable`) to ``out``."""
    import onnx  # noqa: F401  (torch's exporter needs it: missing, it is known before torch loads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # its "Loading weights" bar is noise on a user's first question
    encoder = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()

    class MeanPooled(torch.nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, dim=-1)

    # Traced with a padded row, so no shortcut for an all-ones mask is recorded into the graph.
    ids = torch.ones(2, 8, dtype=torch.long)
    mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3])
    # The TorchScript exporter (dynamo=False) needs only the `onnx` package; torch's newer one needs
    # onnxscript as well and gives the same graph for an encoder this plain. Its warnings (tracer,
    # deprecation, advanced indexing) are for whoever edits the graph, not a user's first question;
    # tests/test_embed.py checks the vectors against sentence-transformers' instead.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(MeanPooled(encoder), (ids, mask), out, input_names=["input_ids", "attention_mask"],
                          output_names=["embedding"], opset_version=17, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                        "attention_mask": {0: "batch", 1: "tokens"}, "embedding": {0: "batch"}})
