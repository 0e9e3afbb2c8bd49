"""Prompt templates are data: TOML files in the project's prompts/ folder, validated on load."""

from __future__ import annotations

import functools
import os
import tomllib
from pathlib import Path

from .errors import ConfigError
from .records import Hit

# prompts/ beside the package in a checkout; EARMARK_PROMPTS_DIR overrides (e.g. for an installed wheel).
PROMPTS_DIR = Path(os.environ.get("EARMARK_PROMPTS_DIR", Path(__file__).resolve().parent.parent / "prompts"))


@functools.lru_cache(maxsize=None)
def load(name: str):
    """A LangChain ChatPromptTemplate from prompts/NAME.toml; its variables must match the declared ones."""
    from langchain_core.prompts import ChatPromptTemplate

    path = PROMPTS_DIR / f"{name}.toml"
    if not path.exists():
        raise ConfigError(f"prompt {name!r} not found at {path}")
    spec = tomllib.loads(path.read_text())
    template = ChatPromptTemplate.from_messages([("system", spec["system"]), ("human", spec["user"])])
    declared, used = set(spec.get("variables", [])), set(template.input_variables)
    if declared != used:
        raise ConfigError(f"prompt {path}: declares {sorted(declared)} but uses {sorted(used)}")
    return template


def passages(hits: list[Hit]) -> str:
    """Numbered passages with their recording's name, as a model sees them (answering, reranking).
    Not their times: the code, never the model, cites them, and a small model copied "01:03:00" as the
    date a letter bore."""
    return "\n\n".join(f"[{i}] {h.file}: {h.text}" for i, h in enumerate(hits, 1))
