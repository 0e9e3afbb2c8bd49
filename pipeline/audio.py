"""Stage 1: read any file ffmpeg can decode into 16 kHz mono float32, and identify it by content.

Debian's ffmpeg decodes wav, flac, mp3, m4a, ogg, opus and the audio track of mp4/mkv. pydub's
ffprobe wrapper finds a file's channels; the decoding itself runs ffmpeg into a pipe that `stream`
reads a block at a time, so a 3-hour file is never held whole in memory (pydub can only decode a
file in one piece, and its resampler has no anti-aliasing filter). `load` joins the same blocks, so
everything (ingest, clips, redaction) sees the same samples.
The file's identity is the SHA-256 of its original bytes, never of a transcode.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import AudioError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000

# Extensions ingest looks at when walking a folder; anything else there is not a recording.
AUDIO_EXTENSIONS = frozenset(
    ".wav .flac .mp3 .m4a .aac .ogg .oga .opus .wma .aiff .aif .webm .mp4 .m4v .mkv .mov .avi".split()
)


@dataclass(frozen=True)
class Audio:
    samples: np.ndarray  # float32 mono in [-1, 1] at SAMPLE_RATE
    path: Path
    sha256: str
    size: int  # bytes of the original file

    @property
    def duration(self) -> float:
        """Length in seconds, from the sample count."""
        return len(self.samples) / SAMPLE_RATE


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def load(path: str | Path, sha256: str | None = None) -> Audio:
    """Decode a whole file to 16 kHz mono float32; raise AudioError naming the file if it is not audio.

    The same samples as `stream` gives, joined. `sha256` may be passed when the caller already hashed
    the file, to avoid reading it twice.
    """
    path = Path(path)
    samples = np.concatenate([b.samples for b in stream(path)])
    return Audio(samples=samples, path=path, sha256=sha256 or sha256_file(path), size=path.stat().st_size)


@dataclass(frozen=True)
class Block:
    """A stretch of a recording as `stream` reads it."""

    start: int  # its first sample on the file's timeline
    samples: np.ndarray  # float32 mono in [-1, 1] at SAMPLE_RATE
    channels: np.ndarray | None = None  # (2, n) for a two-channel file (diarize.py splits calls by channel)

    @property
    def end(self) -> int:
        return self.start + len(self.samples)


@dataclass(frozen=True)
class Probe:
    channels: int  # of the first audio stream
    seconds: float | None  # its length as the container states it, if it does


def probe(path: str | Path) -> Probe:
    """What ffprobe says of a file's audio; AudioError if it finds no audio in it."""
    from pydub.utils import mediainfo_json

    path = Path(path)
    _check_decodable(path)
    try:
        info = mediainfo_json(str(path))
    except (IndexError, OSError, ValueError) as e:
        raise AudioError(f"{path.name}: not decodable audio ({_first_line(e)}); "
                         "check the file plays, or convert it with ffmpeg") from e
    audio = [s for s in info.get("streams", []) if s.get("codec_type") == "audio"]
    if not audio:
        raise AudioError(f"{path.name}: not decodable audio (no audio stream); "
                         "check the file plays, or convert it with ffmpeg")
    seconds = audio[0].get("duration") or info.get("format", {}).get("duration")
    try:
        seconds = float(seconds) if seconds is not None else None
    except ValueError:
        seconds = None
    return Probe(int(audio[0].get("channels") or 1), seconds)


def stream(path: str | Path, block_seconds: float = 300.0) -> Iterator[Block]:
    """The file as consecutive 16 kHz blocks of `block_seconds`, decoded by ffmpeg as they are read.

    A two-channel file keeps its channels in `Block.channels` beside the mono mix (their mean);
    more channels are mixed down by ffmpeg. Raises AudioError naming the file if
    ffmpeg fails or the file holds no samples."""
    path = Path(path)
    two = probe(path).channels == 2
    width = 2 if two else 1
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-vn", "-f", "s16le",
           "-acodec", "pcm_s16le", "-ar", str(SAMPLE_RATE), "-ac", str(width), "-"]
    block_bytes = int(block_seconds * SAMPLE_RATE) * 2 * width
    start = 0
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        while data := proc.stdout.read(block_bytes):
            pcm = np.frombuffer(data[:len(data) - len(data) % (2 * width)], dtype=np.int16)
            pcm = pcm.astype(np.float32) / 32768.0
            channels = pcm.reshape(-1, 2).T.copy() if two else None
            mono = channels.mean(axis=0) if two else pcm
            yield Block(start, mono, channels)
            start += len(mono)
        error = proc.stderr.read().decode(errors="replace")
    if proc.returncode != 0:
        raise AudioError(f"{path.name}: ffmpeg could not decode it after {start / SAMPLE_RATE:.1f} s "
                         f"({_first_line(RuntimeError(error))}); check the file plays, or convert it with ffmpeg")
    if start == 0:
        raise AudioError(f"{path.name}: decodes to no audio samples")


def _check_decodable(path: Path) -> None:
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path.name}: empty file (0 bytes); nothing to transcribe")
    if shutil.which("ffmpeg") is None:
        raise AudioError("ffmpeg is not installed: run `apt-get install ffmpeg` (see README set-up)")


def load_channels(path: str | Path) -> np.ndarray | None:
    """The two channels of a two-channel file, each at 16 kHz float32, shape (2, samples); None for
    any other file. Diarization needs them apart, because a recorded call often holds one speaker
    per channel."""
    try:
        blocks = list(stream(path))
    except AudioError:
        return None
    if blocks[0].channels is None:
        return None
    return np.concatenate([b.channels for b in blocks], axis=1)


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    # ffmpeg's complaint is usually the last line of its banner-laden output.
    return (text[-1] if text else type(e).__name__)[:160]
