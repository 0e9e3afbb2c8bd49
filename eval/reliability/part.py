"""The result every reliability part returns, and the context it runs in."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REAL = Path(os.environ.get("EARMARK_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))


@dataclass
class Goal:
    """One measured figure against its target."""

    measure: str  # what was measured, as the report shows it
    value: str  # the figure, formatted ("20/20", "0", "p95 41 ms")
    goal: str  # the target ("20/20", "0", "<= 1 word/min")
    met: bool


@dataclass
class Part:
    name: str  # the module: crash | badinput | load | attack | injection
    title: str
    command: str  # the command that reproduces this part alone
    goals: list[Goal] = field(default_factory=list)
    details: dict = field(default_factory=dict)  # whatever backs the goals (per trial, per input, per route)
    markdown: str = ""  # the part's own section of report.md (tables of the details)
    seconds: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Part:
        return cls(**{**data, "goals": [Goal(**g) for g in data["goals"]]})


@dataclass(frozen=True)
class Context:
    out: Path  # the part's own working folder, under the report's folder
    audio: Path  # the real recordings (../shared/data/real)
    seed: int = 0
    trials: int = 20  # kill -9 trials (crash)
    quick: bool = False  # the test suite's short version: a few trials, a few inputs, a short burst
    progress: Callable[[str], None] = print
    earmark: tuple[str, ...] = (str(Path(sys.executable).with_name("earmark")),)  # the installed command


def command(part: str, extra: str = "") -> str:
    return f".venv/bin/python -m earmark_eval.reliability --parts {part} --out reliability-out{extra}"
