"""Reference transcripts for WER: eval's own single-stream text where the sidecar is not one.

The raw sidecars in the real data folder are not all plain transcripts in time order: the phone call
lists timed turns, the AMI excerpt groups text by speaker, the 3-speaker clip has speaker labels and
comments, the stereo file holds two channels. ``eval/references/<stem>.txt`` gives a single time-ordered
stream for those (see ``eval/references/README.md``); every other file uses its sidecar.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

EVAL_DIR = Path(__file__).resolve().parent
REFERENCES_DIR = EVAL_DIR / "references"
RECORDINGS_JSON = EVAL_DIR / "recordings.json"
#: The 20 real recordings: ``shared/`` sits beside the repository (on every machine and in CI);
#: EARMARK_REAL_DATA points elsewhere, as it does for the test suite.
REAL_DIR = Path(os.environ.get("EARMARK_REAL_DATA", EVAL_DIR.parent.parent / "shared" / "data" / "real"))


def _plain_text(path: Path) -> str:
    """Read a transcript file, dropping ``#`` comment lines and joining the rest with spaces."""
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return " ".join(kept)


def reference_text(audio_path: str | Path) -> str | None:
    """Return the reference transcript of ``audio_path``: eval's own if present, else the sidecar.

    The sidecar is ``<stem>.txt`` beside the audio; comment lines (``#``) are dropped. Returns None when
    neither exists.
    """
    audio_path = Path(audio_path)
    for candidate in (REFERENCES_DIR / f"{audio_path.stem}.txt", audio_path.with_suffix(".txt")):
        if candidate.is_file():
            return _plain_text(candidate)
    return None


def load_recordings(path: str | Path = RECORDINGS_JSON) -> dict[str, dict]:
    """Return ``{file: {"lang", "duration", "speakers"}}`` for the real recordings.

    Durations are seconds of audio after decoding to 16 kHz mono with ffmpeg (what an ingest sees);
    MP3 headers report up to 0.05 s more.
    """
    return json.loads(Path(path).read_text(encoding="utf-8"))


def durations(path: str | Path = RECORDINGS_JSON) -> dict[str, float]:
    """Return ``{file: duration_seconds}``, the input that citation validity needs."""
    return {name: info["duration"] for name, info in load_recordings(path).items()}
