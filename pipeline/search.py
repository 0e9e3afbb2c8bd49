"""Stage 6: find the passages that answer a query. Dense search over the passage index."""

from __future__ import annotations

from dataclasses import dataclass

from .embed import Embedder
from .errors import ConfigError
from .records import Hit
from .store import Library

MODES = ("dense",)


@dataclass(frozen=True)
class SearchOptions:
    k: int = 10  # hits returned
    mode: str = "dense"  # one of MODES
    file: str | None = None  # only this recording (file name as ingested)
    language: str | None = None  # only passages in this language


def search(library: Library, embedder: Embedder, query: str, options: SearchOptions = SearchOptions()) -> list[Hit]:
    """The passages most relevant to the query, best first."""
    if options.mode not in MODES:
        raise ConfigError(f"unknown search mode {options.mode!r}; choose one of: {', '.join(MODES)}")
    query = query.strip()
    if not query:
        raise ConfigError("empty query: say what to look for")
    return library.index.query(embedder.embed([query])[0], options.k, _where(options))


def _where(options: SearchOptions) -> dict | None:
    clauses = []
    if options.file:
        clauses.append({"file": options.file})
    if options.language:
        clauses.append({"language": options.language})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}
