"""Media the tests make themselves (nothing binary is committed): speech from espeak-ng and videos from
ffmpeg's test pattern with that speech as their sound."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

LINE = "The harbour master counted twelve ships before the storm came."  # Whisper: "... 12 ships ..."
SPEECH_AT = 2.0  # seconds of quiet before the speech, so a citation's time is not simply 0
# What each container is made with: VP8 and Opus for WebM (what every browser plays), H.264 and AAC else.
CODECS = {"webm": ["-c:v", "libvpx", "-b:v", "200k", "-c:a", "libopus"],
          "mp4": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"],
          "mkv": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"],
          "mov": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"]}


def needs_tools() -> None:
    missing = [t for t in ("espeak-ng", "ffmpeg") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (scripts/setup.sh installs them)")


def speech(out: Path, text: str = LINE) -> Path:
    needs_tools()
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(out), text], check=True)
    return out


def video(out: Path, text: str = LINE, seconds: float = 8.0) -> Path:
    """A video of ffmpeg's test pattern whose sound is `text` spoken from SPEECH_AT on."""
    delay = int(SPEECH_AT * 1000)
    with tempfile.TemporaryDirectory() as tmp:  # not beside `out`, which may be a watched folder
        spoken = speech(Path(tmp) / "speech.wav", text)
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
                        "-f", "lavfi", "-i", f"testsrc=s=160x120:r=10:d={seconds}", "-i", str(spoken),
                        "-filter:a", f"adelay={delay}|{delay},apad", "-t", str(seconds),
                        *CODECS[out.suffix.lstrip(".")], str(out)], check=True)
    return out
