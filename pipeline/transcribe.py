"""Stage 2: speech to timestamped segments and words.

Voice activity finds the speech; neighbouring speech regions are packed into windows of up to 30 s,
and each window is decoded in the language detected for its regions, because Whisper picks one
language from the first 30 s it sees (a file that opens in Mandarin would otherwise be decoded as
Chinese throughout, and real meetings switch language between utterances).
Times are window offsets in samples plus Whisper's times within the window: no drift on long files.
Segments that look like Whisper's known failures (repetition loops, speech invented over silence)
are kept in the transcript but flagged, and flagged segments are never indexed.

Long files arrive as pieces cut inside silence (`vad.pieces` over `audio.stream`), so memory does not
grow with length; `transcribe_piece` takes one piece, `transcribe_and_translate` a whole `Audio`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from .audio import SAMPLE_RATE, Audio, Block
from .config import TranscribeOptions
from .errors import ConfigError
from .records import Segment, Word
from .vad import Region, pack_windows, pieces

log = logging.getLogger(__name__)

# Regions shorter than this take their neighbour's language: detection on a word or two is noise.
MIN_DETECT_SECONDS = 1.0
# A region switches language only when Whisper is at least this sure of it.
MIN_LANGUAGE_PROB = 0.6
# Language detection reads a region padded to this many seconds, not to Whisper's 30: the encoder
# then costs a third, and on the 59 regions of ../shared/data/real it decided the same language
# (confident or not) as 30 s padding did on all 59; with no padding at all it misread 5 (es as pt).
DETECT_SECONDS = 10.0


@dataclass(frozen=True)
class Job:
    """One window to decode: its samples, its language, whether to translate it too, and its encoder
    output if language detection already computed it (FasterWhisper.detect_windows)."""

    samples: np.ndarray
    language: str
    translate: bool
    encoded: np.ndarray | None = field(default=None, compare=False, repr=False)


class OpenAIWhisper:
    """The reference backend: openai-whisper on the packaged (converted) weights, one window at a time."""

    package = "openai-whisper"  # whose version is recorded with each transcript

    def __init__(self, options: TranscribeOptions):
        import torch

        from .models import load_whisper

        torch.set_num_threads(options.threads)
        self.model = load_whisper(options.model)

    def detect(self, chunks: list[np.ndarray]) -> list[tuple[str, float]]:
        """The most likely language of each piece of speech (up to 30 s), with its probability."""
        import whisper

        out = []
        for samples in chunks:
            mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(samples), self.model.dims.n_mels)
            _, probs = self.model.detect_language(mel)
            lang = max(probs, key=probs.get)
            out.append((lang, float(probs[lang])))
        return out

    def detect_windows(self, chunks: list[np.ndarray]) -> list[tuple[str, float, None]]:
        """The language of each whole window (no encoder output is kept: openai-whisper re-encodes)."""
        return [(lang, p, None) for lang, p in self.detect(chunks)]

    def decode(self, jobs: list[Job], opts: TranscribeOptions) -> list[tuple[list[dict], list[dict]]]:
        """(transcription, English translation or []) of each job as Whisper-style segment dicts,
        with times relative to the start of its samples."""
        return [(self._run(job, "transcribe", opts), self._run(job, "translate", opts) if job.translate else [])
                for job in jobs]

    def _run(self, job: Job, task: str, opts: TranscribeOptions) -> list[dict]:
        beam = opts.beam(job.language, task)
        return self.model.transcribe(
            job.samples, language=job.language, task=task, fp16=False,
            beam_size=beam if beam > 1 else None, best_of=None if beam > 1 else 5, temperature=TEMPERATURES,
            condition_on_previous_text=False, word_timestamps=task == "transcribe",
            no_speech_threshold=opts.no_speech_threshold, logprob_threshold=opts.logprob_threshold,
            compression_ratio_threshold=opts.compression_ratio_threshold, verbose=None)["segments"]


# Whisper's temperature fallback: a decoding that fails its checks is retried hotter.
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


class FasterWhisper:
    """The fast backend: CTranslate2 (faster-whisper), int8 on CPU, on the packaged weights as they ship.

    Windows are encoded and decoded in batches (the decoder is memory-bound on a CPU, so several
    sequences cost little more than one), and each window's encoder output serves its transcription,
    its translation and its word alignment. faster-whisper's BatchedInferencePipeline would encode
    a window again for each task and decodes every window of a call in one language, hence this
    loop over the same model calls (pinned faster-whisper version: it uses two of its helpers). A
    window whose greedy decoding fails Whisper's checks (a loop, a very unlikely text) is decoded again
    with the temperature fallback, as openai-whisper would. Same settings and the same segment dicts
    as OpenAIWhisper, so nothing downstream can tell the two apart.
    """

    package = "faster-whisper"
    # Windows per decoder call (the encoder takes them one at a time, see _encode). Batches of 8 held
    # ~500 MB of encoder attention at once (1.44 GiB peak for a 10-minute archive, 1.84 for 60
    # minutes); with 4: 1.23 and 1.41 GiB, and the same 11x realtime on the real recordings. With 4,
    # the decoder's cross-attention keys and values (~150 MB) set the 60-minute archive's peak (1190-
    # 1204 MiB against 1004 for 10 minutes, +20%); with 2: 1138 (+9.5%), ~4% slower.
    batch = 2

    def __init__(self, options: TranscribeOptions):
        from faster_whisper import WhisperModel

        from .models import whisper_ct2_dir

        self.model = WhisperModel(str(whisper_ct2_dir(options.model)), device="cpu", compute_type="int8",
                                  cpu_threads=options.threads, local_files_only=True)

    def _encode(self, chunks: list[np.ndarray], seconds: float):
        """The encoder output of the chunks (each padded to ``seconds``, or to the longest), as one batch.

        The windows go through the encoder one at a time and only their outputs are stacked: its
        self-attention over 1500 frames holds ~70 MB a window while it runs, so a batch of four set a
        transient of ~300 MB on top of everything else, and the longer the file, the likelier its
        worst such moment (the peak grew with length). A CPU encoder is compute-bound, so batching it
        saved no time; the decoder, which is memory-bound, still decodes the windows together.
        """
        if len(chunks) == 1:
            return self.model.encode(self._features(chunks, seconds)[0][None])
        return _view(np.stack(self._encoded_rows(chunks, seconds)))

    def _features(self, chunks: list[np.ndarray], seconds: float) -> list[np.ndarray]:
        """The chunks' mel features, each padded to ``seconds`` (or to the longest chunk, at most 30 s)."""
        from faster_whisper.audio import pad_or_trim

        frames = int(seconds * SAMPLE_RATE) // self.model.feature_extractor.hop_length
        features = [self.model.feature_extractor(c)[..., :-1] for c in chunks]
        size = min(3000, max(frames, max(f.shape[-1] for f in features)))
        return [pad_or_trim(f, size) for f in features]

    def _encoded_rows(self, chunks: list[np.ndarray], seconds: float) -> list[np.ndarray]:
        """The encoder output of each chunk, one encoder call each, as arrays that outlive the call."""
        return [np.array(self.model.encode(f[None]))[0] for f in self._features(chunks, seconds)]

    def detect(self, chunks: list[np.ndarray]) -> list[tuple[str, float]]:
        """The most likely language of each piece of speech (up to 30 s), with its probability."""
        out = []
        for chunk in chunks:  # one at a time: a batch is padded to its longest member
            (token, p), *_ = self.model.model.detect_language(self._encode([chunk], DETECT_SECONDS))[0]
            out.append((token[2:-2], float(p)))
        return out

    def detect_windows(self, chunks: list[np.ndarray]) -> list[tuple[str, float, np.ndarray]]:
        """The language of each whole window, from the 30 s encoding its decoding then reuses."""
        out = []
        for first in range(0, len(chunks), self.batch):
            encoded = self._encode(chunks[first:first + self.batch], 30.0)
            rows = np.array(encoded)  # a copy that outlives the StorageView
            for k, ((token, p), *_) in enumerate(self.model.model.detect_language(encoded)):
                out.append((token[2:-2], float(p), rows[k]))
        return out

    def _encoded(self, jobs: list[Job]):
        """The 30 s encoder output of the jobs' windows, computed for those that do not carry it."""
        missing = [k for k, j in enumerate(jobs) if j.encoded is None]
        if len(missing) == len(jobs):
            return self._encode([j.samples for j in jobs], 30.0)
        fresh = iter(self._encoded_rows([jobs[k].samples for k in missing], 30.0) if missing else ())
        return _view(np.stack([j.encoded if j.encoded is not None else next(fresh) for j in jobs]))

    def decode(self, jobs: list[Job], opts: TranscribeOptions) -> list[tuple[list[dict], list[dict]]]:
        """(transcription, English translation or []) of each job as Whisper-style segment dicts,
        with times relative to the start of its samples."""
        out: list[tuple[list[dict], list[dict]]] = [([], []) for _ in jobs]
        by_language: dict[str, list[int]] = {}
        for i, job in enumerate(jobs):
            by_language.setdefault(job.language, []).append(i)
        for language, members in by_language.items():
            for first in range(0, len(members), self.batch):
                batch = [jobs[i] for i in members[first:first + self.batch]]
                encoded = self._encoded(batch)
                spoken = self._generate(batch, encoded, language, "transcribe", opts)
                foreign = [k for k, j in enumerate(batch) if j.translate]
                english = self._generate([batch[k] for k in foreign], _rows(encoded, foreign),
                                         language, "translate", opts) if foreign else []
                english_of = dict(zip(foreign, english))
                for k, i in enumerate(members[first:first + self.batch]):
                    out[i] = (spoken[k], english_of.get(k, []))
        return out

    def _generate(self, jobs: list[Job], encoded, language: str, task: str,
                  opts: TranscribeOptions) -> list[list[dict]]:
        """Greedy (or beam) decoding of jobs sharing a language and a task, with word times when
        transcribing; a job whose decoding fails Whisper's checks goes through `_fallback`."""
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

        model = self.model
        tokenizer = Tokenizer(model.hf_tokenizer, True, task=task, language=language)
        results = model.model.generate(
            encoded, [model.get_prompt(tokenizer, [])] * len(jobs), beam_size=opts.beam(language, task),
            max_length=model.max_length, return_scores=True, return_no_speech_prob=True,
            suppress_blank=True, suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
            max_initial_timestamp_index=int(round(1.0 / model.time_precision)))
        decoded: list[list[dict] | None] = []
        rests: dict[int, int] = {}  # job -> first sample Whisper left unfinished
        for k, (job, result) in enumerate(zip(jobs, results)):
            tokens = result.sequences_ids[0]
            avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
            ratio = get_compression_ratio(tokenizer.decode(tokens).strip())
            silent = result.no_speech_prob > opts.no_speech_threshold and avg_logprob < opts.logprob_threshold
            # A transcription that fails Whisper's checks is decoded again hotter, as Whisper does. A
            # translation is not: it is only an index for English questions, a sure loop in it is
            # flagged and never indexed (flag_of), and the retries cost more than all the rest.
            failed = ratio > opts.compression_ratio_threshold or avg_logprob < opts.logprob_threshold
            if task == "transcribe" and failed and not silent:
                decoded.append(None)
                continue
            parts, seek, _ = model._split_segments_by_timestamps(
                tokenizer=tokenizer, tokens=tokens, time_offset=0.0, segment_size=_frames(job),
                segment_duration=len(job.samples) / SAMPLE_RATE, seek=0)
            if 0 < seek < _frames(job) - MIN_REST_FRAMES:
                rests[k] = seek * model.feature_extractor.hop_length
            decoded.append([{**p, "text": tokenizer.decode(p["tokens"]), "avg_logprob": avg_logprob,
                             "no_speech_prob": result.no_speech_prob,
                             "compression_ratio": get_compression_ratio(tokenizer.decode(p["tokens"]))}
                            for p in parts])
        # Word times, a window at a time: aligning a batch holds the cross-attention of every window
        # padded to the longest one's tokens (~60-100 MB for four long windows), so the peak of a
        # long file was set by its worst batch and grew with length (+17% for 180 minutes against 10).
        # One window at a time also gives each window the same boundary rules: in a batch, the last
        # speech time of one window leaked into the next, whose times start again at 0.
        for k in (k for k, d in enumerate(decoded) if d) if task == "transcribe" else ():
            model.add_word_timestamps([decoded[k]], tokenizer, _rows(encoded, [k]), [_frames(jobs[k])],
                                      "\"'“¿([{-", "\"'.。,，!！?？:：”)]}、", 0.0)
        done = [d if d is not None else self._fallback(job, task, opts) for job, d in zip(jobs, decoded)]
        if rests:  # Whisper stopped before the window's end: go on from its last timestamp, as it would
            tails = [replace(jobs[k], samples=jobs[k].samples[start:], encoded=None) for k, start in rests.items()]
            more = self._generate(tails, self._encode([t.samples for t in tails], 30.0), language, task, opts)
            for (k, start), segments in zip(rests.items(), more):
                done[k] = done[k] + [_shifted(seg, start / SAMPLE_RATE) for seg in segments]
        return done

    def _fallback(self, job: Job, task: str, opts: TranscribeOptions) -> list[dict]:
        """faster-whisper's own sequential decoding with the temperature fallback, for one window."""
        segments, _ = self.model.transcribe(
            job.samples, language=job.language, task=task, beam_size=opts.beam(job.language, task), best_of=5,
            temperature=TEMPERATURES, condition_on_previous_text=False,
            word_timestamps=task == "transcribe", vad_filter=False,
            no_speech_threshold=opts.no_speech_threshold, log_prob_threshold=opts.logprob_threshold,
            compression_ratio_threshold=opts.compression_ratio_threshold)
        return [{"start": s.start, "end": s.end, "text": s.text, "avg_logprob": s.avg_logprob,
                 "no_speech_prob": s.no_speech_prob, "compression_ratio": s.compression_ratio,
                 "words": [{"start": w.start, "end": w.end, "word": w.word, "probability": w.probability}
                           for w in (s.words or ())]}
                for s in segments]


# A window Whisper leaves unfinished with at least this much audio (mel frames) to go is decoded on
# from its last timestamp; what sequential decoding does by seeking, a single batched pass would drop.
MIN_REST_FRAMES = 50


def _shifted(segment: dict, seconds: float) -> dict:
    """A segment dict (and its words) moved `seconds` later."""
    words = [{**w, "start": w["start"] + seconds, "end": w["end"] + seconds} for w in segment.get("words") or ()]
    return {**segment, "start": segment["start"] + seconds, "end": segment["end"] + seconds, "words": words}


def _frames(job: Job) -> int:
    return len(job.samples) // 160  # mel frames (10 ms) of the window's audio


def _rows(encoded, rows: list[int]):
    """The given batch rows of a CTranslate2 encoder output, as a new batch."""
    return _view(np.asarray(encoded)[rows])


def _view(array: np.ndarray):
    """A batch of encoder outputs (windows, frames, width) as the CTranslate2 StorageView the decoder takes."""
    import ctranslate2

    return ctranslate2.StorageView.from_array(np.ascontiguousarray(array))


# Backends by explicit name; each is built once per process and options.
BACKENDS: dict[str, type] = {
    "openai-whisper": OpenAIWhisper,
    "faster-whisper": FasterWhisper,
}

_backends: dict[tuple, object] = {}


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
    """Segments in the language spoken, and English renderings of the non-English speech.

    The English rendering (Whisper's task="translate") is what lets an English question find a
    Spanish recording; it lies on the same timeline, so a citation still points at the spoken words.
    """
    segments: list[Segment] = []
    translations: list[Segment] = []
    for piece, regions in pieces([Block(0, audio.samples)]):
        spoken, english = transcribe_piece(piece, regions, options)
        segments += spoken
        translations += english
    return number(segments), number(translations)


def number(segments: list[Segment]) -> list[Segment]:
    """The segments with ids 0, 1, 2, ... in order."""
    return [replace(s, id=i) for i, s in enumerate(segments)]


def transcribe_piece(piece: Block, regions: list[Region],
                     options: TranscribeOptions) -> tuple[list[Segment], list[Segment]]:
    """Segments (ids unset) and English renderings of one piece's speech regions, on the file's timeline."""
    engine = backend(options)
    # A region no neighbour can share a window with is a window whatever the languages: its language is
    # detected on the encoding its decoding uses, which saves an encoder pass (a clip of one utterance).
    alone = [] if options.language else alone_regions(regions, int(options.max_window * SAMPLE_RATE))
    known: dict[int, tuple[str, float]] = {}
    encoded: dict[Region, np.ndarray] = {}
    found = engine.detect_windows([piece.samples[regions[i].start:regions[i].end] for i in alone]) if alone else []
    for i, (lang, p, enc) in zip(alone, found):
        if enc is not None:
            encoded[regions[i]] = enc
        if regions[i].seconds >= MIN_DETECT_SECONDS:
            known[i] = (lang, p)
    languages = region_languages(engine, piece.samples, regions, options.language, known)
    windows = pack_windows(regions, languages, options.max_window)
    jobs = [Job(piece.samples[w.start:w.end], lang, options.translate and lang != "en", encoded.get(w))
            for w, lang in windows]
    segments: list[Segment] = []
    translations: list[Segment] = []
    for (window, lang), (spoken, english) in zip(windows, engine.decode(jobs, options)):
        segments += _segments(spoken, window, piece.start, lang, options)
        translations += _segments(english, window, piece.start, "en", options)
    log.debug("piece at %.1f s: %d regions, %d windows, %d segments (%d translated), languages %s",
              piece.start / SAMPLE_RATE, len(regions), len(windows), len(segments), len(translations),
              sorted(set(languages)))
    return segments, translations


def alone_regions(regions: list[Region], limit: int) -> list[int]:
    """Indexes of the regions that pack_windows leaves alone in a window whatever their languages:
    neither neighbour fits in one window (``limit`` samples) with them."""
    last = len(regions) - 1
    return [i for i, r in enumerate(regions)
            if (i == 0 or r.end - regions[i - 1].start > limit) and (i == last or regions[i + 1].end - r.start > limit)]


def region_languages(engine, samples: np.ndarray, regions: list[Region], forced: str | None,
                     known: dict[int, tuple[str, float]] | None = None) -> list[str]:
    """One language per speech region (a meeting may switch language between utterances).

    Detection on short or messy speech is unreliable (Whisper base calls some English meeting talk
    Welsh), so a region takes the language it is detected as only when the detection is confident;
    otherwise it takes the nearest confident region's language, earlier regions first. ``known``
    holds detections already made (region index -> language, probability).
    """
    if forced:
        return [forced] * len(regions)
    known = known or {}
    long = [i for i, r in enumerate(regions) if r.seconds >= MIN_DETECT_SECONDS and i not in known]
    detected: list[tuple[str | None, float]] = [known.get(i, (None, 0.0)) for i in range(len(regions))]
    for i, found in zip(long, engine.detect([samples[regions[i].start:regions[i].end] for i in long]) if long else []):
        detected[i] = found
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


def _segments(raw: list[dict], window: Region, start: int, language: str,
              options: TranscribeOptions) -> Iterator[Segment]:
    offset, limit = (start + window.start) / SAMPLE_RATE, (start + window.end) / SAMPLE_RATE
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
