"""A LangChain retriever over an earmark library, for use inside other LangChain apps.

    from pipeline.retriever import EarmarkRetriever
    docs = EarmarkRetriever.from_library("~/my-library").invoke("what was decided about the budget?")
    docs[0].metadata  # {"file", "start", "end", "speaker", "score", "translated", "file_hash"}

Documents are passages found by earmark's hybrid search; metadata carries the file and seconds so a
citation can always be traced back to the recording.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict


class EarmarkRetriever(BaseRetriever):
    """Retrieve passages (with file, start, end and speaker) from an earmark library."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    library: Any  # pipeline.store.Library
    embedder: Any  # pipeline.embed.Embedder
    options: Any = None  # pipeline.search.SearchOptions; None = hybrid, k=10

    @classmethod
    def from_library(cls, root: str | Path, **search_options: Any) -> "EarmarkRetriever":
        """Open a library directory with its own embedder; keyword arguments are SearchOptions fields."""
        from .config import EmbedOptions
        from .embed import load
        from .search import SearchOptions
        from .store import Library

        library = Library(Path(root))
        return cls(library=library, embedder=load(EmbedOptions(model=library.embed_model)),
                   options=SearchOptions(**search_options))

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        from .search import SearchOptions, search

        hits = search(self.library, self.embedder, query, self.options or SearchOptions())
        return [Document(page_content=h.text, metadata=self._metadata(h)) for h in hits]

    def _metadata(self, hit) -> dict:
        speakers = sorted({s.speaker for s in self.library.transcript(hit.file_hash).segments
                           if s.speaker and s.end > hit.start and s.start < hit.end})
        return {"file": hit.file, "start": hit.start, "end": hit.end,
                "speaker": ", ".join(speakers) or None, "score": hit.score, "translated": hit.translated,
                "file_hash": hit.file_hash}
