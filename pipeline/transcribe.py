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
from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from .audio import SAMPLE_RATE, Audio
from .config import TranscribeOptions
from .errors import ConfigError
from .records import Segment, Word
from .vad import Region, pack_windows, speech_regions

log = logging.getLogger(__name__)

class OpenAIWhisper:
    """The reference backend: openai-whisper on the packaged (converted) weights."""

    package = "openai-whisper"  # whose version is recorded with each transcript

    def __init__(self, options: TranscribeOptions):
        import torch

        from .models import load_whisper

        torch.set_num_threads(options.threads)
        self.model = load_whisper(options.model)

    def language(self, samples: np.ndarray) -> tuple[str, float]:
        """The most likely language of a piece of speech (up to 30 s), with its probability."""
        import whisper

        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(samples), self.model.dims.n_mels)
        _, probs = self.model.detect_language(mel)
        lang = max(probs, key=probs.get)
        return lang, float(probs[lang])

    def decode(self, samples: np.ndarray, language: str, opts: TranscribeOptions,
               task: str = "transcribe") -> list[dict]:
        """Whisper-style segment dicts with times relative to the start of `samples`."""
        result = self.model.transcribe(
            samples, language=language, task=task, fp16=False,
            beam_size=opts.beam_size, best_of=None if opts.beam_size else 5,
            temperature=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
            condition_on_previous_text=False, word_timestamps=True,
            no_speech_threshold=opts.no_speech_threshold, logprob_threshold=opts.logprob_threshold,
            compression_ratio_threshold=opts.compression_ratio_threshold, verbose=None)
        return result["segments"]


class FasterWhisper:
    """The fast backend: CTranslate2 (faster-whisper), int8 on CPU, on the packaged weights as they ship.

    Same decoding settings and the same segment dicts as OpenAIWhisper, so nothing downstream can
    tell the two apart; voice activity is ours (vad.py), not faster-whisper's, for the same reason.
    """

    package = "faster-whisper"

    def __init__(self, options: TranscribeOptions):
        from faster_whisper import WhisperModel

        from .models import whisper_ct2_dir

        self.model = WhisperModel(str(whisper_ct2_dir(options.model)), device="cpu", compute_type="int8",
                                  cpu_threads=options.threads, local_files_only=True)

    def language(self, samples: np.ndarray) -> tuple[str, float]:
        """The most likely language of a piece of speech (up to 30 s), with its probability."""
        lang, prob, _ = self.model.detect_language(samples)
        return lang, float(prob)

    def decode(self, samples: np.ndarray, language: str, opts: TranscribeOptions,
               task: str = "transcribe") -> list[dict]:
        """Whisper-style segment dicts with times relative to the start of `samples`."""
        segments, _ = self.model.transcribe(
            samples, language=language, task=task, beam_size=opts.beam_size or 1, best_of=5,
            temperature=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0), condition_on_previous_text=False,
            word_timestamps=True, vad_filter=False, no_speech_threshold=opts.no_speech_threshold,
            log_prob_threshold=opts.logprob_threshold,
            compression_ratio_threshold=opts.compression_ratio_threshold)
        return [{"start": s.start, "end": s.end, "text": s.text, "avg_logprob": s.avg_logprob,
                 "no_speech_prob": s.no_speech_prob, "compression_ratio": s.compression_ratio,
                 "words": [{"start": w.start, "end": w.end, "word": w.word, "probability": w.probability}
                           for w in (s.words or ())]}
                for s in segments]


# Backends by explicit name; each is built once per process and options.
BACKENDS: dict[str, type] = {
    "openai-whisper": OpenAIWhisper,
    "faster-whisper": FasterWhisper,
}

_backends: dict[tuple, object] = {}

# Regions shorter than this take their neighbour's language: detection on a word or two is noise.
MIN_DETECT_SECONDS = 1.0
# A region switches language only when Whisper is at least this sure of it.
MIN_LANGUAGE_PROB = 0.6


def backend(options: TranscribeOptions):
    """The (cached) backend for these options; an unknown name lists the valid ones."""
    if options.backend not in BACKENDS:
        raise ConfigError(f"unknown transcription backend {options.backend!r}; "
                          f"choose one of: {', '.join(sorted(BACKENDS))}")
    key = (options.backend, options.model, options.threads)
    if key not in _backends:
        _backends[key] = BACKENDS[options.backend](options)
    return _backends[key]


def transcribe(audio: Audio, options: TranscribeOptions) -> list[Segment]:
    """Transcribe a whole recording into segments on its original timeline."""
    return transcribe_and_translate(audio, options)[0]


def transcribe_and_translate(audio: Audio, options: TranscribeOptions) -> tuple[list[Segment], list[Segment]]:
    """Segments in the language spoken, and English renderings of the non-English windows.

    The English rendering (Whisper's task="translate") is what lets an English question find a
    Spanish recording; it lies on the same timeline, so a citation still points at the spoken words.
    """
    engine = backend(options)
    regions = speech_regions(audio.samples)
    languages = region_languages(engine, audio.samples, regions, options.language)
    segments: list[Segment] = []
    translations: list[Segment] = []
    for window, language in pack_windows(regions, languages, options.max_window):
        samples = audio.samples[window.start:window.end]
        for seg in _segments(engine.decode(samples, language, options), window, language, options):
            segments.append(replace(seg, id=len(segments)))
        if options.translate and language != "en":
            raw = engine.decode(samples, language, options, task="translate")
            for seg in _segments(raw, window, "en", options):
                translations.append(replace(seg, id=len(translations)))
    log.info("%s: %d regions, %d segments (%d translated), languages %s", audio.path.name, len(regions),
             len(segments), len(translations), sorted(set(languages)))
    return segments, translations


def region_languages(engine, samples: np.ndarray, regions: list[Region], forced: str | None) -> list[str]:
    """One language per speech region (a meeting may switch language between utterances).

    Detection on short or messy speech is unreliable (Whisper base calls some English meeting talk
    Welsh), so a region takes the language it is detected as only when the detection is confident;
    otherwise it takes the nearest confident region's language, earlier regions first.
    """
    if forced:
        return [forced] * len(regions)
    detected = [engine.language(samples[r.start:r.end]) if r.seconds >= MIN_DETECT_SECONDS else (None, 0.0)
                for r in regions]
    confident = [lang if lang and p >= MIN_LANGUAGE_PROB else None for lang, p in detected]
    if not any(confident):  # nothing confident: trust the single most probable detection
        best = max(detected, key=lambda d: d[1], default=(None, 0.0))[0]
        return [best or "en"] * len(regions)
    out: list[str] = []
    for i, lang in enumerate(confident):
        if lang is None:
            before = next((c for c in reversed(confident[:i]) if c), None)
            lang = before or next(c for c in confident[i:] if c)
        out.append(lang)
    return out


def _segments(raw: list[dict], window: Region, language: str, options: TranscribeOptions) -> Iterator[Segment]:
    offset, limit = window.start / SAMPLE_RATE, window.end / SAMPLE_RATE
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


_LOOP = re.compile(r"(\b.{2,40}?\b)(?:\W+\1){3,}", re.IGNORECASE)


def flag_of(raw: dict, text: str, options: TranscribeOptions) -> str | None:
    """Why a decoded segment should stay out of the index, or None if it looks like real speech."""
    if raw["compression_ratio"] > options.compression_ratio_threshold or _LOOP.search(text):
        return "repetition"
    if raw["no_speech_prob"] > options.no_speech_threshold and raw["avg_logprob"] < options.logprob_threshold:
        return "no-speech"
    return None
