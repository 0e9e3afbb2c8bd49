"""Reranking the fused candidates before they are shown: by the answering LLM or by a cross-encoder.

Chosen by name (`--rerank`, env EARMARK_RERANK): `none` (the default), `llm` (the configured answering
model orders the passages through prompts/rerank.toml, under a JSON schema), or `cross-encoder` (a
sentence-transformers CrossEncoder from a local directory named by EARMARK_CROSS_ENCODER; no
cross-encoder ships as a PyPI package today, so none is installed by default). eval reports what each
buys (hit@k) and costs (latency) against no reranking.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable

from . import prompts
from .config import AnswerOptions
from .errors import ConfigError
from .records import Hit

log = logging.getLogger(__name__)

POOL = 5  # candidates reranked (ask shows the model five); each adds ~100 tokens (~1.6 s) of LLM prompt


def _none(question: str, hits: list[Hit], llm: AnswerOptions | None = None) -> list[Hit]:
    return hits


def _llm(question: str, hits: list[Hit], llm: AnswerOptions | None = None) -> list[Hit]:
    from dataclasses import replace

    from .llm import reply_or_nothing
    from .verify import without_instructions

    schema = {"type": "object", "properties": {"order": {
        "type": "array", "items": {"type": "integer", "minimum": 1, "maximum": len(hits)}, "maxItems": len(hits)}},
        "required": ["order"]}
    # Speech addressed to an AI is not shown to the reranking model either (verify.without_instructions).
    shown = [replace(h, text=without_instructions(h.text)) for h in hits]
    # (no readable reply: search's order stands)
    reply = reply_or_nothing("rerank", schema, llm, passages=prompts.passages(shown), question=question)
    return by_order(hits, reply.get("order", []))


def by_order(hits: list[Hit], order: list) -> list[Hit]:
    """Hits in the model's order (1-based numbers); numbers it invents are ignored, ones it forgets follow."""
    seen: list[int] = []
    for n in order:
        if isinstance(n, int) and 1 <= n <= len(hits) and n - 1 not in seen:
            seen.append(n - 1)
    seen += [i for i in range(len(hits)) if i not in seen]
    return [hits[i] for i in seen]


@functools.lru_cache(maxsize=1)
def _cross_encoder_model(path: str):
    from sentence_transformers import CrossEncoder

    return CrossEncoder(path, device="cpu", local_files_only=True)


def _cross_encoder(question: str, hits: list[Hit], llm: AnswerOptions | None = None) -> list[Hit]:
    path = os.environ.get("EARMARK_CROSS_ENCODER")
    if not path or not os.path.isdir(path):
        raise ConfigError("no cross-encoder installed: set EARMARK_CROSS_ENCODER to a local sentence-transformers "
                          "cross-encoder directory (none ships as a PyPI package), or use --rerank llm")
    scores = _cross_encoder_model(path).predict([(question, h.text) for h in hits])
    return [h for _, h in sorted(zip(scores, hits), key=lambda x: -x[0])]


RERANKERS: dict[str, Callable[[str, list[Hit], AnswerOptions | None], list[Hit]]] = {
    "none": _none,
    "llm": _llm,
    "cross-encoder": _cross_encoder,
}


def rerank(name: str, question: str, hits: list[Hit], llm: AnswerOptions | None = None) -> list[Hit]:
    """The first POOL hits reordered by the named reranker (``llm``: the model that `llm` asks, by default
    the configured one), followed by the rest as they were."""
    if name not in RERANKERS:
        raise ConfigError(f"unknown reranker {name!r}; choose one of: {', '.join(RERANKERS)}")
    return RERANKERS[name](question, hits[:POOL], llm) + hits[POOL:] if hits else hits
