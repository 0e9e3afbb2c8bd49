"""Where things live and the options of each stage, one frozen dataclass per stage.

Every model is a setting: naming a bigger Whisper, another embedder or a remote LLM is configuration,
never a code change. Settings come from CLI flags first, then EARMARK_* environment variables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError


def default_library() -> Path:
    """The library directory: $EARMARK_LIBRARY, else a per-user data directory."""
    env = os.environ.get("EARMARK_LIBRARY")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("earmark")) / "library"


def default_models_dir() -> Path:
    """Where assembled and converted weights are cached: $EARMARK_MODELS_DIR, else a user cache dir."""
    env = os.environ.get("EARMARK_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("earmark")) / "models"


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def env_switch(name: str, default: bool | None) -> bool | None:
    """An on/off EARMARK_* setting: 1, true, yes or on; 0, false, no or off (any case); ``default`` when
    unset or empty. Anything else is a one-line ConfigError naming the setting: each switch once took
    its own spellings, so EARMARK_LLM_TRANSLATE=false left the renderings on."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if raw.lower() in _ON:
        return True
    if raw.lower() in _OFF:
        return False
    raise ConfigError(f"{name}={raw!r} is not on or off: set it to 1 or 0, or unset it")


def env_number(name: str, default, kind: type = int):
    """A numeric EARMARK_* setting, or ``default`` when it is unset or empty; a value that is not a
    number is a one-line ConfigError naming the setting (it is read when this module is imported)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{name}={raw!r} is not {what}: set it to one, or unset it") from None


@dataclass(frozen=True)
class TranscribeOptions:
    model: str = _env("EARMARK_WHISPER_MODEL", "base")  # a name in models.WHISPER_MODELS or a .pt path
    # see transcribe.BACKENDS; faster-whisper is ~2.5x faster here on the same weights, openai-whisper
    # is the reference implementation
    backend: str = _env("EARMARK_WHISPER_BACKEND", "faster-whisper")
    # Beam search width for all speech; None: greedy for English, `foreign_beam_size` for the rest.
    beam_size: int | None = env_number("EARMARK_BEAM_SIZE", 0) or None
    # Whisper base errs most outside English, and there beam search pays: on eval's folder, WER German
    # 0.178 -> 0.144 and Spanish 0.167 -> 0.144, names such as "Grimmelshausen" and "Leichenhalle"
    # right, for ~3% more ingest time (32.2 -> 33.1 s; most speech is English). On English it barely
    # helps (0.116 -> 0.111) but cuts segments elsewhere, passages move, and answers on
    # eval/sets/real.jsonl fell from 42 to 35 of 51 with beam 5 everywhere; beam 5 outside English
    # only: 43 of 51 (stop-20 note). Whisper's English translation (an index) stays greedy: with a beam
    # too, 38 of 51. 1 decodes all speech greedily.
    foreign_beam_size: int = env_number("EARMARK_FOREIGN_BEAM_SIZE", 5)
    language: str | None = None  # force one language; None detects it per speech region
    threads: int = env_number("EARMARK_THREADS", os.cpu_count() or 2)
    # Whisper's usual guards against silence and music hallucination.
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    # Speech regions from voice activity are packed into windows of at most this many seconds,
    # each decoded with its own detected language (Whisper decides language from its first 30 s).
    max_window: float = 30.0
    # Also store an English rendering of non-English speech (Whisper task="translate") and index it,
    # so English questions find recordings in other languages. Costs a second decode of that speech.
    translate: bool = env_switch("EARMARK_TRANSLATE", True)

    def beam(self, language: str, task: str = "transcribe") -> int:
        """The beam width to decode speech in ``language`` with, for ``task`` (1: greedy)."""
        if self.beam_size:
            return self.beam_size
        return self.foreign_beam_size if language != "en" and task == "transcribe" else 1


@dataclass(frozen=True)
class ChunkOptions:
    min_seconds: float = 20.0  # a passage grows to at least this long before it may end
    max_seconds: float = 60.0  # and never past this
    overlap_segments: int = 1  # segments repeated at the start of the next passage
    max_gap: float = 8.0  # a silence longer than this ends a passage early


@dataclass(frozen=True)
class EmbedOptions:
    # models.EMBEDDERS name or a sentence-transformers dir. multilingual-e5-small finds speech in other
    # languages from an English question (eval: cross-lingual dense hit@1 0.80 against MiniLM's 0.53).
    model: str = _env("EARMARK_EMBED_MODEL", "multilingual-e5-small")
    batch_size: int = 16  # texts per call into the model: bounds the activations held at once


@dataclass(frozen=True)
class AnswerOptions:
    llm: str = _env("EARMARK_LLM", "llama-cpp")  # see llm.BACKENDS
    model: str = _env("EARMARK_LLM_MODEL", "")  # backend's model name; "" = the backend's default
    base_url: str = _env("EARMARK_LLM_BASE_URL", "")  # for openai-compatible and ollama
    timeout: float = env_number("EARMARK_LLM_TIMEOUT", 120.0, float)  # seconds a model server may take per call
    k: int = 5  # passages shown to the model
    max_tokens: int = 200
    temperature: float = 0.0
    # A question whose best passage is less similar than this is answered "found nothing"
    # without asking the model (cosine similarity of MiniLM embeddings). Swept on dev
    # (eval/results/sweeps): 0.2 answers one more question and one unanswerable one; 0.3 loses seven.
    min_relevance: float = env_number("EARMARK_MIN_RELEVANCE", 0.25, float)
    # The sentence-similarity model behind min_relevance and verification (answer.py, citations.py,
    # verify.py); their thresholds are calibrated on its cosines. e5's cosines are all between about
    # 0.77 and 0.88, so the search embedder cannot tell relevant from unrelated by a threshold.
    support_model: str = _env("EARMARK_SUPPORT_MODEL", "all-MiniLM-L6-v2")
    # Foreign speech is rendered into English by the answering model when a question first needs it
    # (translation.py; kept in the library), beside Whisper's own translation; 0 uses Whisper's alone.
    translate: bool = env_switch("EARMARK_LLM_TRANSLATE", True)


@dataclass(frozen=True)
class SummaryOptions:
    """`earmark summary`: chapters (chapters.py) and cited summary sentences (summary.py)."""

    # Sentences compared either side of a possible chapter boundary (TextTiling's block), and the
    # shortest chapter (seconds; a shorter one joins its neighbour). Swept on eval's dev archive only
    # (eval/summaries.py; eval/results/summaries): window 5 was best at every minimum; boundary F1 was
    # 0.73 at 10 s and 0.71 at 20 s (one boundary of 18 apart), 0.64 at 30 s. 20 s: half the chapters
    # of 10 s, so half the model calls on a long recording, for that one boundary.
    window: int = 5
    min_chapter: float = 20.0
    # A silence at least this long ends a chapter, as it ends a passage (ChunkOptions.max_gap).
    pause: float = ChunkOptions.max_gap
    points: int = 2  # summary sentences per chapter, and per piece of the whole, at most
    shown: int = 24  # sentences of a chapter the model reads, at most (the most central ones)
    # Chapter summaries read at once when the whole is summarised; more are summarised in groups
    # first, so every call stays well inside the model's 4,096-token context.
    group: int = 10


@dataclass(frozen=True)
class ServeOptions:
    """`earmark serve`: where it listens and what it lets clients do (web.py, web_guard.py, web_jobs.py)."""

    host: str = "127.0.0.1"  # anything but loopback needs a token
    port: int = 8000
    token: str | None = None  # every /api request must carry it (EARMARK_TOKEN)
    allowed_hosts: tuple[str, ...] = ()  # Host names served besides loopback and the bound address
    # Folders `POST /api/ingest {"path"}` may read; none: uploads only (a client names no server file).
    ingest_roots: tuple[Path, ...] = ()
    watch: tuple[Path, ...] = ()  # folders kept in the library as `earmark watch` keeps them (watch.py)
    # Asks running or waiting on the model at once; one more is told 503 with Retry-After. Four asks
    # of ~3-10 s each keep the last one's wait under a minute on 2 cores.
    ask_queue: int = env_number("EARMARK_ASK_QUEUE", 4)
    ask_timeout: float = env_number("EARMARK_ASK_TIMEOUT", 120.0, float)  # seconds, queue wait included
