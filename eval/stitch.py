"""Stitched long archives: real clips joined by gaps of silence and noise, with a manifest of true times.

The real recordings are 4 to 70 s long; earmark is meant for hours. ``build_archive`` repeats and
shuffles them into one 16 kHz mono WAV of a fixed length, separated by 2 to 40 s gaps of digital
silence, white noise or pink noise, and writes a manifest beside it (``<out>.json``) giving, from sample
counts, where every clip, every gap and every known phrase (``eval/phrases.json``) lies. The archive
always opens with an English clip, because Whisper picks the language from the first 30 s.

Run ``python -m earmark_eval.stitch OUT.wav MINUTES [SEED]`` to build one.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np

from earmark_eval.references import EVAL_DIR, REAL_DIR, load_recordings

SAMPLE_RATE = 16000
PHRASES_JSON = EVAL_DIR / "phrases.json"
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a")
GAP_SECONDS = (2.0, 40.0)
GAP_KINDS = ("silence", "white", "pink")
#: Noise RMS in dBFS: audible under headphones, well below speech (about -25 dBFS in these clips).
NOISE_DBFS = (-60.0, -45.0)
#: An opening clip at least this long fills most of Whisper's 30 s language-detection window.
OPENING_MIN_SECONDS = 25.0


def load_clip(path: Path) -> np.ndarray:
    """Decode any ffmpeg-readable file to 16 kHz mono int16 samples (stereo is averaged)."""
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-ac", "1", "-ar", str(SAMPLE_RATE),
           "-f", "s16le", "-"]
    try:
        raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    except FileNotFoundError as e:
        raise RuntimeError("ffmpeg is not on PATH; install it (apt-get install ffmpeg)") from e
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"ffmpeg could not decode {path}: {e.stderr.decode(errors='replace')}") from e
    return np.frombuffer(raw, dtype=np.int16)


def make_gap(kind: str, n: int, level_dbfs: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` int16 samples of digital silence, or white or pink (1/f power) noise at ``level_dbfs`` RMS."""
    if kind == "silence":
        return np.zeros(n, dtype=np.int16)
    noise = rng.standard_normal(n)
    if kind == "pink":
        spectrum = np.fft.rfft(noise)
        freqs = np.arange(len(spectrum), dtype=float)
        freqs[0] = 1.0  # keep DC finite; it is scaled away with the rest
        noise = np.fft.irfft(spectrum / np.sqrt(freqs), n)
    elif kind != "white":
        raise ValueError(f"unknown gap kind {kind!r}; valid: {', '.join(GAP_KINDS)}")
    rms = float(np.sqrt(np.mean(noise**2))) or 1.0
    scaled = noise / rms * 32767 * 10 ** (level_dbfs / 20)
    return np.clip(np.round(scaled), -32768, 32767).astype(np.int16)


def load_phrases(path: Path = PHRASES_JSON) -> dict[str, list[dict]]:
    """Known phrases per clip file: ``{file: [{"phrase", "start", "end"}]}`` (times within the clip)."""
    if not path.is_file():
        return {}
    by_file: dict[str, list[dict]] = {}
    for p in json.loads(path.read_text(encoding="utf-8")):
        by_file.setdefault(p["file"], []).append({k: p[k] for k in ("phrase", "start", "end")})
    return by_file


def _clip_order(names: list[str], langs: dict[str, str | None], lengths: dict[str, int],
                rng: np.random.Generator):
    """Yield clip names forever: an English opener, then shuffled passes over every clip."""
    english = [n for n in names if langs.get(n) == "en"]
    if not english:
        raise ValueError("the clips folder holds no English clip to open the archive with")
    long_enough = [n for n in english if lengths[n] >= OPENING_MIN_SECONDS * SAMPLE_RATE]
    last = str(rng.choice(long_enough)) if long_enough else max(english, key=lengths.__getitem__)
    yield last
    while True:
        order = [str(n) for n in rng.permutation(names)]
        if len(order) > 1 and order[0] == last:  # never the same clip twice in a row
            order[0], order[1] = order[1], order[0]
        yield from order
        last = order[-1]


def _gap(rng: np.random.Generator, n: int, start: int) -> tuple[np.ndarray, dict]:
    """A random gap of ``n`` samples starting at sample ``start``, and its manifest entry."""
    kind = str(rng.choice(GAP_KINDS))
    level = None if kind == "silence" else round(float(rng.uniform(*NOISE_DBFS)), 1)
    entry = {"start": start / SAMPLE_RATE, "end": (start + n) / SAMPLE_RATE, "kind": kind,
             "level_dbfs": level}
    return make_gap(kind, n, level or 0.0, rng), entry


def build_archive(out_wav: str | Path, minutes: float, seed: int, clips_dir: str | Path = REAL_DIR,
                  phrases_path: Path = PHRASES_JSON) -> dict:
    """Write a ``minutes``-long archive to ``out_wav`` and its manifest to ``<out>.json``; return it.

    Deterministic for a given seed and clips folder. Clips play whole (never cut); gaps between them
    are log-uniform in 2-40 s so short pauses are common and long ones still occur; the last gap pads
    the archive to exactly ``minutes``. Offsets are sample counts / 16000.
    """
    import soundfile as sf  # written piecewise: a 60-minute archive is never held in memory

    out_wav, clips_dir = Path(out_wav), Path(clips_dir)
    rng = np.random.default_rng(seed)
    known = load_recordings()
    names = sorted(p.name for p in clips_dir.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    clips = {n: load_clip(clips_dir / n) for n in names}
    langs = {n: known.get(n, {}).get("lang") for n in names}
    phrases = load_phrases(phrases_path)
    target = int(round(minutes * 60 * SAMPLE_RATE))
    manifest = {"archive": out_wav.name, "sample_rate": SAMPLE_RATE, "seed": seed, "minutes": minutes,
                "samples": target, "duration": target / SAMPLE_RATE, "clips": [], "gaps": [],
                "known_phrases": []}
    pos = 0
    order = _clip_order(names, langs, {n: len(a) for n, a in clips.items()}, rng)
    with sf.SoundFile(out_wav, "w", samplerate=SAMPLE_RATE, channels=1, subtype="PCM_16") as out:
        name = next(order)
        while pos + len(clips[name]) <= target:
            offset = pos / SAMPLE_RATE
            out.write(clips[name])
            pos += len(clips[name])
            manifest["clips"].append({"file": name, "lang": langs[name], "offset": offset,
                                      "duration": len(clips[name]) / SAMPLE_RATE})
            manifest["known_phrases"] += [{"file": name, "phrase": p["phrase"],
                                           "start": round(offset + p["start"], 3),
                                           "end": round(offset + p["end"], 3)} for p in phrases.get(name, [])]
            name = next(order)
            seconds = math.exp(rng.uniform(*np.log(GAP_SECONDS)))
            n = min(int(round(seconds * SAMPLE_RATE)), target - pos)
            if pos + n + len(clips[name]) > target:
                n = target - pos  # the next clip will not fit: pad to the end instead
            if n > 0:
                samples, entry = _gap(rng, n, pos)
                out.write(samples)
                pos += n
                manifest["gaps"].append(entry)
    if not manifest["clips"]:
        raise ValueError(f"{minutes} min is shorter than the opening clip {name}")
    Path(out_wav).with_suffix(".json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n",
                                                  encoding="utf-8")
    return manifest


def phrase_questions(manifest: dict) -> list[dict]:
    """Questions in the issue-3 shape asking for each known phrase of a stitched archive.

    The question is the phrase itself (a search query); its gold lists every place the phrase occurs,
    since clips repeat.
    """
    by_phrase: dict[str, list[dict]] = {}
    for p in manifest["known_phrases"]:
        by_phrase.setdefault(p["phrase"], []).append(
            {"file": manifest["archive"], "start": p["start"], "end": p["end"]})
    return [{"id": f"p{i:03d}", "question": phrase, "answerable": True, "gold": gold,
             "answer_any": [phrase], "lang": "en", "kind": "exact-phrase"}
            for i, (phrase, gold) in enumerate(sorted(by_phrase.items()), start=1)]


if __name__ == "__main__":
    build_archive(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 0)
