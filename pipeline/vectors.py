"""The passage index: a Chroma collection of passage vectors with their file and times.

Chroma's default embedding function downloads a model at run time, which fails offline, so the
collection has none: earmark always passes vectors it computed itself (embed.py). The collection
records the embedder's name; a library opened with another embedder is refused in store.Library.
Everything here can be rebuilt from the transcripts.

Where the collection lives: embedded (chromadb.PersistentClient in LIBRARY/chroma, the default), or on
a Chroma server (`EARMARK_CHROMA_URL=http://host:port`, chromadb.HttpClient), where each library has a
collection of its own (`earmark-<library id>`), so one server can hold many libraries. A server that is
down, or goes away, is one LibraryError line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from . import trace
from .errors import ConfigError, LibraryError
from .records import Hit, Passage

log = logging.getLogger(__name__)

COLLECTION = "passages"
# A filtered query looks among this many times k nearest passages first (PassageIndex.query): a filter
# that passes a tenth of the library finds k there on average when WIDE is 10, in a look that costs
# tens of milliseconds at a million passages.
WIDE = 10


def _client(path: Path, url: str | None):
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    if not url:
        return chromadb.PersistentClient(path=str(path), settings=settings)
    where = urlparse(url)
    if where.scheme not in ("http", "https") or not where.hostname:
        raise ConfigError(f"EARMARK_CHROMA_URL={url!r} is not an address: give http://HOST:PORT")
    with reaching(url):
        return chromadb.HttpClient(host=where.hostname, port=where.port or (443 if where.scheme == "https" else 8000),
                                   ssl=where.scheme == "https", settings=settings)


@contextmanager
def reaching(url: str | None):
    """Around a call of a Chroma server: a connection that fails becomes one line naming the server."""
    try:
        yield
    except (ConfigError, LibraryError):
        raise
    except Exception as e:
        if not url:
            raise
        detail = " ".join(str(e).split())[:160]
        raise LibraryError(f"the Chroma server at {url} did not answer ({type(e).__name__}: {detail}): start it "
                           "(`chroma run --path DIR --port PORT`) or unset EARMARK_CHROMA_URL") from e


class PassageIndex:
    """Passages and their vectors in a Chroma collection, embedded (``url`` None) or on a server."""

    def __init__(self, path: Path, embed_model: str, url: str | None = None, name: str = COLLECTION):
        self.url, self.name, self.embed_model = url or None, name, embed_model
        self.client = _client(path, self.url)
        with reaching(self.url):
            self.collection = self._collection()

    def _collection(self):
        return self.client.get_or_create_collection(
            self.name, embedding_function=None, metadata={"hnsw:space": "cosine", "embed_model": self.embed_model})

    def clear(self) -> None:
        """Empty the collection (before a library's vectors are rebuilt in it from the transcripts)."""
        with reaching(self.url):
            try:
                self.client.delete_collection(self.name)
            except Exception:  # noqa: BLE001 - there was none: nothing to empty
                log.debug("no collection %s to delete", self.name)
            self.collection = self._collection()

    def replace_file(self, file_hash: str, passages: list[Passage], vectors: np.ndarray, name: str = "") -> None:
        """Make the index hold exactly these passages for one recording (idempotent: ids are
        `<hash>:<n>`, and whatever an interrupted earlier call left for this recording is deleted first)."""
        with reaching(self.url):
            self.collection.delete(where={"file_hash": file_hash})
            trace.point("store-chroma", name or file_hash)  # between the delete and the upsert
            if not passages:
                return
            self.collection.upsert(
                ids=[p.id for p in passages], embeddings=vectors, documents=[p.text for p in passages],
                metadatas=[_metadata(p) for p in passages])

    def delete_file(self, file_hash: str) -> None:
        with reaching(self.url):
            self.collection.delete(where={"file_hash": file_hash})

    def count(self) -> int:
        with reaching(self.url):
            return self.collection.count()

    def query(self, vector: np.ndarray, k: int, where: dict | None = None, where_document: dict | None = None,
              admits: Callable[[dict, str], bool] | None = None) -> list[Hit]:
        """The k passages nearest to a unit query vector (within the filters); score is cosine similarity.

        `admits(metadata, text)` tells whether a passage passes the same filters: given, the nearest
        WIDE x k passages of the whole collection are looked at first and those it admits kept, when k
        of them pass (or the collection holds no more). Chroma filters by reading the metadata of every
        passage that passes before it looks at a vector: 0.2-0.6 s at a million passages for one file or
        a tenth of them, 1.5-2 s for a speaker (a text scan), where the wider look takes tens of
        milliseconds. A narrow filter still costs Chroma's, after the wider look that found too few."""
        if admits is not None and (where or where_document):
            wide = self._query(vector, WIDE * k, None, None)
            kept = [h for h, m in wide if admits(m, h.text)]
            if len(kept) >= k or len(wide) < WIDE * k:
                return kept[:k]
        return [h for h, _ in self._query(vector, k, where, where_document)]

    def _query(self, vector: np.ndarray, k: int, where: dict | None,
               where_document: dict | None) -> list[tuple[Hit, dict]]:
        # (Chroma returns what there is when asked for more, so no count first: a round trip per query.)
        with reaching(self.url):
            r = self.collection.query(query_embeddings=vector.reshape(1, -1), n_results=k, where=where,
                                      where_document=where_document, include=["documents", "metadatas", "distances"])
        return [
            (Hit(passage_id=pid, file_hash=m["file_hash"], file=m["file"], start=m["start"], end=m["end"],
                 text=doc, score=1.0 - dist, translated=bool(m.get("translated", False))), m)
            for pid, doc, m, dist in zip(r["ids"][0], r["documents"][0], r["metadatas"][0], r["distances"][0])
        ]


def _metadata(p: Passage) -> dict:
    return {"file_hash": p.file_hash, "file": p.file_name, "start": p.start, "end": p.end,
            "language": p.language, "translated": p.translated,
            "segment_ids": ",".join(map(str, p.segment_ids))}
