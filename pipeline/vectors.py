"""The passage index: a Chroma collection of passage vectors with their file and times.

Chroma's default embedding function downloads a model at run time, which fails offline, so the
collection has none: earmark always passes vectors it computed itself (embed.py). The collection
records the embedder's name; a library opened with another embedder is refused in store.Library.
Everything here can be rebuilt from the transcripts.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from . import trace
from .records import Hit, Passage

log = logging.getLogger(__name__)

COLLECTION = "passages"


class PassageIndex:
    """Passages and their vectors in a persistent Chroma collection."""

    def __init__(self, path: Path, embed_model: str):
        import chromadb
        from chromadb.config import Settings

        self.client = chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))
        self.collection = self.client.get_or_create_collection(
            COLLECTION, embedding_function=None,
            metadata={"hnsw:space": "cosine", "embed_model": embed_model})

    def replace_file(self, file_hash: str, passages: list[Passage], vectors: np.ndarray, name: str = "") -> None:
        """Make the index hold exactly these passages for one recording (idempotent: ids are
        `<hash>:<n>`, and whatever an interrupted earlier call left for this recording is deleted first)."""
        self.collection.delete(where={"file_hash": file_hash})
        trace.point("store-chroma", name or file_hash)  # between the delete and the upsert
        if not passages:
            return
        self.collection.upsert(
            ids=[p.id for p in passages], embeddings=vectors, documents=[p.text for p in passages],
            metadatas=[_metadata(p) for p in passages])

    def delete_file(self, file_hash: str) -> None:
        self.collection.delete(where={"file_hash": file_hash})

    def count(self) -> int:
        return self.collection.count()

    def query(self, vector: np.ndarray, k: int, where: dict | None = None,
              where_document: dict | None = None) -> list[Hit]:
        """The k passages nearest to a unit query vector (within the filters); score is cosine similarity."""
        n = min(k, self.count())
        if n == 0:
            return []
        r = self.collection.query(query_embeddings=vector.reshape(1, -1), n_results=n, where=where,
                                  where_document=where_document, include=["documents", "metadatas", "distances"])
        return [
            Hit(passage_id=pid, file_hash=m["file_hash"], file=m["file"], start=m["start"], end=m["end"],
                text=doc, score=1.0 - dist, translated=bool(m.get("translated", False)))
            for pid, doc, m, dist in zip(r["ids"][0], r["documents"][0], r["metadatas"][0], r["distances"][0])
        ]


def _metadata(p: Passage) -> dict:
    return {"file_hash": p.file_hash, "file": p.file_name, "start": p.start, "end": p.end,
            "language": p.language, "translated": p.translated,
            "segment_ids": ",".join(map(str, p.segment_ids))}
