"""Stage 1: read any file ffmpeg can decode into 16 kHz mono float32, and identify it by content.

pydub drives Debian's ffmpeg, so wav, flac, mp3, m4a, ogg, opus and the audio track of mp4/mkv all
work. The file's identity is the SHA-256 of its original bytes, never of a transcode.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
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
    """Decode a file to 16 kHz mono float32; raise AudioError naming the file if it is not audio.

    `sha256` may be passed when the caller already hashed the file, to avoid reading it twice.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise AudioError(f"{path.name}: empty file (0 bytes); nothing to transcribe")
    if shutil.which("ffmpeg") is None:
        raise AudioError("ffmpeg is not installed: run `apt-get install ffmpeg` (see README set-up)")
    from pydub import AudioSegment
    from pydub.exceptions import CouldntDecodeError

    try:
        seg = AudioSegment.from_file(path)
    except (CouldntDecodeError, IndexError, OSError) as e:
        raise AudioError(f"{path.name}: not decodable audio ({_first_line(e)}); "
                         "check the file plays, or convert it with ffmpeg") from e
    seg = seg.set_channels(1).set_frame_rate(SAMPLE_RATE).set_sample_width(2)
    samples = np.frombuffer(seg.raw_data, dtype=np.int16).astype(np.float32) / 32768.0
    if samples.size == 0:
        raise AudioError(f"{path.name}: decodes to no audio samples")
    return Audio(samples=samples, path=path, sha256=sha256 or sha256_file(path), size=size)


def load_channels(path: str | Path) -> np.ndarray | None:
    """The channels of a multichannel file, each at 16 kHz float32, shape (channels, samples); None
    for a mono file or one ffprobe cannot read (`load` already said why). Diarization needs them
    apart, because a recorded call often holds one speaker per channel."""
    from pydub import AudioSegment
    from pydub.exceptions import CouldntDecodeError
    from pydub.utils import mediainfo_json

    try:  # ffprobe first: a mono file (the common case) is not decoded a second time
        streams = mediainfo_json(str(path)).get("streams", [])
        channels = max((int(s.get("channels") or 1) for s in streams if s.get("codec_type") == "audio"), default=1)
        if channels < 2:
            return None
        seg = AudioSegment.from_file(path).set_frame_rate(SAMPLE_RATE).set_sample_width(2)
    except (CouldntDecodeError, IndexError, OSError, ValueError):
        return None
    return np.stack([np.frombuffer(c.raw_data, dtype=np.int16).astype(np.float32) / 32768.0
                     for c in seg.split_to_mono()])


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    # ffmpeg's complaint is usually the last line of its banner-laden output.
    return (text[-1] if text else type(e).__name__)[:160]
