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
import os
import re
import shutil
import struct
import subprocess
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
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


def shown(name: str | os.PathLike) -> str:
    """A file name (or a path's name) as printed: control characters (a newline, a tab, an escape)
    and bytes that are not UTF-8 escaped, so one file's report stays one line and cannot drive the
    terminal. Letters of any script are kept as they are."""
    return one_line(Path(name).name if isinstance(name, os.PathLike) else name)


def one_line(text: str) -> str:
    """`text` with its control and format characters and line separators written as escapes (\\n,
    \\x1b, \\u202e, \\u2028); spaces and the letters of any script are kept."""
    if text.isprintable():
        return text
    out = []
    for c in text:
        if 0xDC80 <= ord(c) <= 0xDCFF:  # a byte os.fsdecode could not decode (surrogateescape)
            out.append(f"\\x{ord(c) - 0xDC00:02x}")
        elif not unicodedata.category(c).startswith(("C", "Zl", "Zp")):
            out.append(c)
        else:
            out.append(c.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def missing(path: Path) -> str:
    """Why a path named for ingest is not a file, and what to do, as one line."""
    if path.is_symlink():
        try:
            path.resolve(strict=True)
        except RuntimeError:  # Python 3.11 says "Symlink loop" this way, 3.13 as OSError ELOOP
            return f"{shown(path)}: symbolic link loop; point the link at a recording or remove it"
        except OSError as e:
            if e.errno == 40:  # ELOOP
                return f"{shown(path)}: symbolic link loop; point the link at a recording or remove it"
            target = one_line(os.readlink(path))
            return f"{shown(path)}: broken symbolic link, points to {target}; fix the link or remove it"
    if path.exists():
        return f"{shown(path)}: not a regular file; name a recording"
    return f"{one_line(str(path))}: no such file; check the path"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in pieces; AudioError naming the file if it cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    except OSError as e:
        raise AudioError(f"{shown(path)}: cannot be read ({e.strerror or e}); check its permissions "
                         "(chmod +r) and that its disk is mounted") from e
    return h.hexdigest()


def identity(path: Path) -> tuple[int, ...]:
    """What changes when a file is written to or replaced (a new inode, or new times and size), whatever
    its bytes: a file swapped for another and back has its first bytes again, not its first identity."""
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def check_unchanged(path: Path, sha256: str, since: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """AudioError unless the file still has the bytes hashed as `sha256` (and, given `since`, the
    identity it had then); returns its identity now.

    The hash is the recording's identity and is taken before decoding; a file still being written
    (a recorder, a copy) or replaced meanwhile would be stored under a hash its transcript does not
    match. Checked before decoding and after, with the file's identity unchanged between: the bytes
    decoded are then the bytes hashed, even for a file replaced by another and back while it was read
    (its bytes alone would pass). Re-reading costs far less than the transcription it guards (SHA-256
    runs at hundreds of MB/s); retrying at once would meet a file still growing, so it fails and the
    next run takes it."""
    try:
        before = identity(path)
        same = sha256_file(path) == sha256 and identity(path) == before and since in (None, before)
    except OSError:
        same = False  # (gone, or replaced by something unreadable)
    if not same:
        raise AudioError(f"{shown(path)}: changed while it was read (still being written, or replaced); "
                         "nothing was stored: ingest it again once it is complete")
    return before


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
    tags: dict[str, str] = field(default_factory=dict)  # container and audio-stream metadata, keys lower-case
    # What the file's own header promises when ffprobe reports less (ffprobe clamps a WAV's length to
    # the bytes present, so a WAV cut short "is" as long as what is left); else None.
    stated: float | None = None


def probe(path: str | Path) -> Probe:
    """What ffprobe says of a file's audio; AudioError if it finds no audio in it."""
    from pydub.utils import mediainfo_json

    path = Path(path)
    _check_decodable(path)
    try:
        info = mediainfo_json(str(path.absolute()))  # a relative "-x.wav" would be read as an option
    except (IndexError, OSError, ValueError) as e:
        raise AudioError(f"{shown(path)}: not decodable audio ({_first_line(e)}); "
                         "check the file plays, or convert it with ffmpeg") from e
    audio = [s for s in info.get("streams", []) if s.get("codec_type") == "audio"]
    if not audio and any(s.get("codec_type") == "video" for s in info.get("streams", [])):
        raise AudioError(f"{shown(path)}: a video with no audio track; nothing to transcribe "
                         "(ingest a copy that has its sound)")
    if not audio:
        raise AudioError(f"{shown(path)}: not decodable audio (no audio stream); "
                         "check the file plays, or convert it with ffmpeg")
    seconds = audio[0].get("duration") or info.get("format", {}).get("duration")
    try:
        seconds = float(seconds) if seconds is not None else None
    except ValueError:
        seconds = None
    tags = {k.lower(): str(v) for k, v in {**audio[0].get("tags", {}), **info.get("format", {}).get("tags", {})}.items()}
    return Probe(int(audio[0].get("channels") or 1), seconds, tags, _wav_seconds(path))


def _wav_seconds(path: Path) -> float | None:
    """The length a RIFF WAV's header states (its data chunk's size over its byte rate), or None.

    Read here because neither ffprobe nor libsndfile reports it: both clamp it to the bytes present.
    A size of 0 or 0xFFFFFFFF is a streaming writer's placeholder, not a length (RF64 is skipped too)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            rate = None
            while len(chunk := f.read(8)) == 8:
                kind, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if kind == b"fmt " and size >= 16:
                    rate = struct.unpack("<I", f.read(16)[8:12])[0]  # nAvgBytesPerSec
                    f.seek(size - 16 + size % 2, 1)
                elif kind == b"data":
                    return size / rate if rate and 0 < size < 0xFFFFFFF0 else None
                else:
                    f.seek(size + size % 2, 1)
    except OSError:
        return None
    return None


def truncation(info: Probe, decoded_seconds: float) -> str | None:
    """A warning if far fewer seconds decoded than the file states (a copy cut short, a recorder that
    lost power), else None. Half a second and 2 % of slack absorb codec padding and rounding."""
    stated = max(info.seconds or 0.0, info.stated or 0.0)
    if stated - decoded_seconds <= max(0.5, 0.02 * stated):
        return None
    return f"truncated — its header says {stated:.1f} s, only {decoded_seconds:.1f} s decoded"


# Where containers keep the moment a recording was made, most specific first: an iPhone's voice memo
# and camera (local time, with its offset), QuickTime/MP4/M4A and some WAV writers, Matroska, Broadcast
# WAV's origination date, then the plain date of ID3 (TDRC), Vorbis comments and RIFF INFO (ICRD).
DATE_TAGS = ("com.apple.quicktime.creationdate", "creation_time", "date_recorded", "origination_date", "date")
_DATE = re.compile(r"(\d{4})(?:[-:/.](\d{2})(?:[-:/.](\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?"
                   r"(?:\.\d+)?\s*(Z|[+-]\d{2}:?\d{2})?)?)?)?")


def recording_date(tags: dict[str, str]) -> tuple[str, str] | None:
    """When a file's metadata says it was recorded, as ISO 8601 (only as precise as the tag: "1961",
    "2019-04", "2019-04-02", "2021-06-03T10:15:00+00:00"), and the tag it came from; None if none says."""
    for key in DATE_TAGS:
        value = tags.get(key, "").strip()
        if key == "origination_date" and tags.get("origination_time"):
            value = f"{value}T{tags['origination_time'].strip()}"
        iso = _iso(value) if value else None
        if iso:
            return iso, key
    return None


def _iso(value: str) -> str | None:
    """A date or date-time as ISO 8601 at the precision given, or None if it is not one (or impossible).

    Not dateutil's parser: it fills a missing month or day from today, inventing a precision the tag
    does not have, and reads nearly any text as some date."""
    from datetime import datetime

    m = _DATE.fullmatch(value)
    if not m:
        return None
    year, month, day, hour, minute, second, zone = m.groups()
    try:
        moment = datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0),
                          int(second or 0))
    except ValueError:
        return None
    if not 1900 <= moment.year <= 2200:  # 0000-00-00 and the like: a writer's placeholder
        return None
    if hour is None:
        return "-".join(p for p in (year, month, day) if p)
    zone = "+00:00" if zone == "Z" else (zone if zone is None or ":" in zone else f"{zone[:3]}:{zone[3:]}")
    return moment.isoformat() + (zone or "")


def stream(path: str | Path, block_seconds: float = 300.0, channels: int | None = None) -> Iterator[Block]:
    """The file as consecutive 16 kHz blocks of `block_seconds`, decoded by ffmpeg as they are read.

    A two-channel file keeps its channels in `Block.channels` beside the mono mix (their mean);
    more channels are mixed down by ffmpeg. ``channels``, if the caller has probed the file already,
    saves probing it again. Raises AudioError naming the file if
    ffmpeg fails or the file holds no samples."""
    path = Path(path)
    two = (probe(path).channels if channels is None else channels) == 2
    width = 2 if two else 1
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path.absolute()), "-vn", "-f", "s16le",
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
    if proc.returncode != 0 and start == 0:
        raise AudioError(f"{shown(path)}: not decodable audio ({_first_line(RuntimeError(error))}); check the "
                         "file plays, or convert it with ffmpeg")
    if proc.returncode != 0:
        raise AudioError(f"{shown(path)}: ffmpeg could not decode it after {start / SAMPLE_RATE:.1f} s "
                         f"({_first_line(RuntimeError(error))}); check the file plays, or convert it with ffmpeg")
    if start == 0:
        raise AudioError(f"{shown(path)}: decodes to no audio samples; check the file plays, "
                         "or convert it with ffmpeg")


def _check_decodable(path: Path) -> None:
    if not path.is_file():
        raise AudioError(missing(path))
    if path.stat().st_size == 0:
        raise AudioError(f"{shown(path)}: empty file (0 bytes); nothing to transcribe")
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
