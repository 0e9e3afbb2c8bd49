"""Stage 4: sentence embeddings with a packaged sentence-transformers model, loaded offline.

The model's name is recorded with the library's index; opening an index with another model is an
error (store.Library checks it), because vectors from two models are not comparable.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from .config import EmbedOptions

log = logging.getLogger(__name__)


@dataclass
class Embedder:
    name: str  # as recorded in the index
    model: object  # a SentenceTransformer
    batch_size: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False)
        return vecs.astype(np.float32)

    @property
    def dim(self) -> int:
        return int(self.model.get_sentence_embedding_dimension())


_cache: dict[str, Embedder] = {}


def load(options: EmbedOptions = EmbedOptions()) -> Embedder:
    """Load (once per process) the embedder named in the options, with the model hub switched off."""
    if options.model not in _cache:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # its "Loading weights" bar is noise on a CLI's stderr

        from .models import embedder_path

        path = embedder_path(options.model)
        log.info("loading embedder %s from %s", options.model, path)
        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        _cache[options.model] = Embedder(name=options.model, model=model, batch_size=options.batch_size)
    return _cache[options.model]
