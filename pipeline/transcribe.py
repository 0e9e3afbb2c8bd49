"""Stage 2: speech to timestamped segments and words.

Voice activity finds the speech; neighbouring speech regions are packed into windows of up to 30 s and
each window is decoded with its own detected language, because Whisper picks one language from the
first 30 s it sees (a file that opens in Mandarin would otherwise be decoded as Chinese throughout).
Times are window offsets in samples plus Whisper's times within the window: no drift on long files.
Segments that look like Whisper's known failures (repetition loops, speech invented over silence)
are kept in the transcript but flagged, and flagged segments are never indexed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator

import numpy as np

from .audio import SAMPLE_RATE, Audio
from .config import TranscribeOptions
from .errors import ConfigError
from .records import Segment, Word
from .vad import Region, pack_windows, speech_regions

log = logging.getLogger(__name__)

# A window decoder takes 16 kHz samples and options and returns (language, whisper-style segment dicts)
# with times relative to the window: {"start", "end", "text", "words": [...], "avg_logprob", ...}.
WindowDecoder = Callable[[np.ndarray, TranscribeOptions], tuple[str, list[dict]]]


def _openai_whisper(options: TranscribeOptions) -> WindowDecoder:
    import torch

    from .models import load_whisper

    torch.set_num_threads(options.threads)
    model = load_whisper(options.model)

    def decode(window: np.ndarray, opts: TranscribeOptions) -> tuple[str, list[dict]]:
        result = model.transcribe(
            window, language=opts.language, task="transcribe", fp16=False,
            beam_size=opts.beam_size, best_of=None if opts.beam_size else 5,
            temperature=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
            condition_on_previous_text=False, word_timestamps=True,
            no_speech_threshold=opts.no_speech_threshold,
            logprob_threshold=opts.logprob_threshold,
            compression_ratio_threshold=opts.compression_ratio_threshold, verbose=None)
        return result["language"], result["segments"]

    return decode


# Backends by explicit name; each builds a window decoder once per process.
BACKENDS: dict[str, Callable[[TranscribeOptions], WindowDecoder]] = {
    "openai-whisper": _openai_whisper,
}

_decoders: dict[tuple, WindowDecoder] = {}


def decoder(options: TranscribeOptions) -> WindowDecoder:
    """The (cached) window decoder for these options; an unknown backend lists the valid ones."""
    if options.backend not in BACKENDS:
        raise ConfigError(f"unknown transcription backend {options.backend!r}; "
                          f"choose one of: {', '.join(sorted(BACKENDS))}")
    key = (options.backend, options.model, options.threads)
    if key not in _decoders:
        _decoders[key] = BACKENDS[options.backend](options)
    return _decoders[key]


def transcribe(audio: Audio, options: TranscribeOptions) -> list[Segment]:
    """Transcribe a whole recording into segments on its original timeline."""
    decode = decoder(options)
    windows = pack_windows(speech_regions(audio.samples), options.max_window, len(audio.samples))
    log.info("%s: %d speech windows", audio.path.name, len(windows))
    segments: list[Segment] = []
    for window in windows:
        for seg in _decode_window(decode, audio.samples, window, options):
            segments.append(_with_id(seg, len(segments)))
    return segments


def _decode_window(decode: WindowDecoder, samples: np.ndarray, window: Region,
                   options: TranscribeOptions) -> Iterator[Segment]:
    offset = window.start / SAMPLE_RATE
    language, raw = decode(samples[window.start:window.end], options)
    limit = window.end / SAMPLE_RATE
    for r in raw:
        text = r["text"].strip()
        if not text:
            continue
        words = tuple(
            Word(start=_clip(offset + w["start"], offset, limit), end=_clip(offset + w["end"], offset, limit),
                 text=w["word"], probability=round(float(w["probability"]), 4))
            for w in r.get("words", ()) if w["word"].strip())
        yield Segment(
            id=-1, start=_clip(offset + r["start"], offset, limit), end=_clip(offset + r["end"], offset, limit),
            text=text, words=words, language=language,
            avg_logprob=round(float(r["avg_logprob"]), 4), no_speech_prob=round(float(r["no_speech_prob"]), 4),
            compression_ratio=round(float(r["compression_ratio"]), 4), flag=flag_of(r, text, options))


def _clip(t: float, lo: float, hi: float) -> float:
    return round(min(max(t, lo), hi), 3)


def _with_id(seg: Segment, i: int) -> Segment:
    from dataclasses import replace

    return replace(seg, id=i)


_LOOP = re.compile(r"(\b.{2,40}?\b)(?:\W+\1){3,}", re.IGNORECASE)


def flag_of(raw: dict, text: str, options: TranscribeOptions) -> str | None:
    """Why a decoded segment should stay out of the index, or None if it looks like real speech."""
    if raw["compression_ratio"] > options.compression_ratio_threshold or _LOOP.search(text):
        return "repetition"
    if raw["no_speech_prob"] > options.no_speech_threshold and raw["avg_logprob"] < options.logprob_threshold:
        return "no-speech"
    return None
