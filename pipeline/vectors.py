"""The passage index: a Chroma collection of passage vectors with their file and times.

Chroma's default embedding function downloads a model at run time, which fails offline, so the
collection has none: earmark always passes vectors it computed itself (embed.py). The collection
records the embedder's name; a library opened with another embedder is refused in store.Library.
Everything here can be rebuilt from the transcripts.

Where the collection lives: embedded (chromadb.PersistentClient in LIBRARY/chroma, the default), or on
a Chroma server (`EARMARK_CHROMA_URL=http://host:port`, chromadb.HttpClient), where each library has a
collection of its own (`earmark-<library id>`), so one server can hold many libraries. A server that is
down, or goes away, is one LibraryError line.

Centring. multilingual-e5's vectors share one direction: every passage's cosine with every question lies
between about 0.77 and 0.88, so a passage of many unrelated sentences sits close to all questions (a hub)
and outranks the one that answers (eval/results/scale/hubs: 800 distinct distractors put 91 above the
answer on average, for 10 of 27 questions). Taking the vectors' mean away before comparing them is the
standard remedy for hubness (Suzuki et al., 2013): 1.6 on average there, for 6. So once the index holds
CENTRE_AT passages it takes their mean (the centre) and from then on stores, and compares questions as,
vectors less the centre, at unit length (`comparable`). The centre is the library's own, taken once and
kept in the collection's metadata with the vectors it was taken from (so `reindex` keeps it, and a
library moved to a server takes a new one there). A smaller index is left as it is: a mean of a few
dozen passages is noise, and there centring neither helped nor hurt (dev dense hit@1/5 0.77/0.94 raw,
0.73/0.96 centred on the 7-minute library's own 45 passages). Rewriting the vectors is safe to kill:
the centre is recorded first with `centring: pending`, each vector carries `centred` once rewritten, and
the next write finishes what is left.

Search breadth. Chroma finds nearest passages in an HNSW graph, looking at EF_SEARCH candidates, not at
every vector; with its default (100) the graph lost most answers in a large archive that an exact search
finds (eval/scale.py's "dense, exact" row shows the difference at each size).
"""

from __future__ import annotations

import base64
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
# The index takes its centre (module docstring) when it first holds this many passages (about three hours
# of speech): a mean of a thousand vectors varies by about 3% of one vector's spread per dimension.
CENTRE_AT = 1000
CENTRE_BATCH = 5000  # vectors rewritten per call while centring
# How many candidates Chroma's HNSW graph keeps while it looks for a query's nearest passages (its
# default is 100). e5's questions lie apart from its passages, and at 100k passages the default lost
# most answers an exact search finds. Dense hit@1 / hit@5 of the dev questions at 100k against it
# (eval/results/scale/ef-search, `python -m earmark_eval.ef_search`; exact: 0.74 / 0.81): 100: 0.33 /
# 0.33, 400: 0.52 / 0.52, 800: 0.63 / 0.67, 1600: 0.67 / 0.70, 3200: the same, 6400: 0.70 / 0.74 at
# a third more time. 1600 is where it levels off.
EF_SEARCH = 1600


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
        self.centre = _centre(self.collection.metadata)

    def _collection(self):
        # (Chroma takes the distance from `configuration`: given also as the older metadata key
        # "hnsw:space", it is silently made l2.)
        collection = self.client.get_or_create_collection(
            self.name, embedding_function=None, metadata={"embed_model": self.embed_model},
            configuration={"hnsw": {"space": "cosine", "ef_search": EF_SEARCH}})
        if ((collection.configuration or {}).get("hnsw") or {}).get("ef_search", EF_SEARCH) < EF_SEARCH:
            collection.modify(configuration={"hnsw": {"ef_search": EF_SEARCH}})  # one made by an older earmark
            collection = self.client.get_collection(self.name, embedding_function=None)
        return collection

    def clear(self) -> None:
        """Empty the collection (before a library's vectors are rebuilt in it from the transcripts)."""
        with reaching(self.url):
            try:
                self.client.delete_collection(self.name)
            except Exception:  # noqa: BLE001 - there was none: nothing to empty
                log.debug("no collection %s to delete", self.name)
            self.collection = self._collection()
        self.centre = None

    def comparable(self, vectors: np.ndarray) -> np.ndarray:
        """Unit vectors (one, or rows) as this index compares them: less its centre, at unit length."""
        if self.centre is None:
            return vectors
        x = np.asarray(vectors, dtype=np.float32) - self.centre
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)

    def _recentre(self) -> None:
        """Read the centre again while there is none: another process (an ingest beside a running
        server) may have taken it since this one opened the index. Once taken it never changes. A
        writer reads it before each write; a reader when what it finds was centred (`query`)."""
        if self.centre is None:
            with reaching(self.url):
                self.collection = self.client.get_collection(self.name, embedding_function=None)
            self.centre = _centre(self.collection.metadata)

    def _note(self, **meta) -> None:
        """Set keys of the collection's metadata (Chroma replaces it whole; its distance is kept apart)."""
        kept = {k: v for k, v in (self.collection.metadata or {}).items() if not k.startswith("hnsw:")}
        self.collection.modify(metadata={**kept, **meta})
        self.collection = self.client.get_collection(self.name, embedding_function=None)

    def _centre_when_grown(self) -> None:
        """Take the centre once the index holds CENTRE_AT passages, or finish a centring a kill cut short."""
        meta = self.collection.metadata or {}
        if self.centre is None:
            if self.collection.count() < CENTRE_AT:
                return
            total, n = None, 0
            for _, vectors, _ in self.pages(None, offset=True):
                total = vectors.sum(axis=0) if total is None else total + vectors.sum(axis=0)
                n += len(vectors)
            mean = (total / n).astype(np.float32)
            log.info("centring the passage index on the mean of its %d passages (once)", n)
            self._note(centre=base64.b64encode(mean.tobytes()).decode("ascii"), centring="pending")
            self.centre = mean
        elif meta.get("centring") != "pending":
            return
        for ids, vectors, metadatas in self.pages({"centred": {"$ne": True}}):
            trace.point("centre-chroma", self.name)
            self.collection.update(ids=ids, embeddings=self.comparable(vectors),
                                   metadatas=[{**m, "centred": True} for m in metadatas])
        self._note(centring="done")

    def pages(self, where: dict | None, offset: bool = False):
        """(ids, vectors as stored, metadatas) of the passages matching `where` (None: all), CENTRE_BATCH
        at a time: read on by offset, or (offset False) from the start each time, for a caller that makes
        each page stop matching before it asks for the next."""
        at = 0
        while True:
            got = self.collection.get(where=where, limit=CENTRE_BATCH, offset=at if offset else 0,
                                      include=["embeddings", "metadatas"])
            if not got["ids"]:
                return
            yield got["ids"], np.asarray(got["embeddings"], dtype=np.float32), got["metadatas"]
            at += len(got["ids"])

    def replace_file(self, file_hash: str, passages: list[Passage], vectors: np.ndarray, name: str = "") -> None:
        """Make the index hold exactly these passages for one recording (idempotent: ids are
        `<hash>:<n>`, and whatever an interrupted earlier call left for this recording is deleted first)."""
        self._recentre()
        with reaching(self.url):
            self.collection.delete(where={"file_hash": file_hash})
            trace.point("store-chroma", name or file_hash)  # between the delete and the upsert
            if passages:
                centred = {"centred": True} if self.centre is not None else {}
                self.collection.upsert(
                    ids=[p.id for p in passages], embeddings=self.comparable(vectors),
                    documents=[p.text for p in passages], metadatas=[{**_metadata(p), **centred} for p in passages])
            self._centre_when_grown()

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
        milliseconds. A narrow filter still costs Chroma's, after the wider look that found too few.

        Passages carry `centred` once the index has a centre: one found by an index opened before
        another process (an ingest beside a running server) took it makes this one read the centre and
        look again. So a reader learns of a centre from what it finds, with no read of the collection's
        metadata per query (a round trip to a Chroma server)."""
        found = self._nearest(vector, k, where, where_document, admits)
        if self.centre is None and any(m.get("centred") for _, m in found):
            self._recentre()
            found = self._nearest(vector, k, where, where_document, admits)
        return [h for h, _ in found]

    def _nearest(self, vector: np.ndarray, k: int, where: dict | None, where_document: dict | None,
                 admits: Callable[[dict, str], bool] | None) -> list[tuple[Hit, dict]]:
        if admits is not None and (where or where_document):
            wide = self._query(vector, WIDE * k, None, None)
            kept = [(h, m) for h, m in wide if admits(m, h.text)]
            if len(kept) >= k or len(wide) < WIDE * k:
                return kept[:k]
        return self._query(vector, k, where, where_document)

    def _query(self, vector: np.ndarray, k: int, where: dict | None,
               where_document: dict | None) -> list[tuple[Hit, dict]]:
        # (Chroma returns what there is when asked for more, so no count first: a round trip per query.)
        with reaching(self.url):
            r = self.collection.query(query_embeddings=self.comparable(vector).reshape(1, -1), n_results=k, where=where,
                                      where_document=where_document, include=["documents", "metadatas", "distances"])
        return [
            (Hit(passage_id=pid, file_hash=m["file_hash"], file=m["file"], start=m["start"], end=m["end"],
                 text=doc, score=1.0 - dist, translated=bool(m.get("translated", False))), m)
            for pid, doc, m, dist in zip(r["ids"][0], r["documents"][0], r["metadatas"][0], r["distances"][0])
        ]


def _centre(meta: dict | None) -> np.ndarray | None:
    kept = (meta or {}).get("centre")
    return np.frombuffer(base64.b64decode(kept), dtype=np.float32).copy() if kept else None


def _metadata(p: Passage) -> dict:
    return {"file_hash": p.file_hash, "file": p.file_name, "start": p.start, "end": p.end,
            "language": p.language, "translated": p.translated,
            "segment_ids": ",".join(map(str, p.segment_ids))}
