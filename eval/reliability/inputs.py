"""The inputs of the bad-input part: each kind of broken, odd or hostile file and how to make it.

Everything is made here, into a folder, by ffmpeg, sox, espeak-ng or a few lines of Python (nothing
is committed as a binary); ``badinput`` ingests them and judges what earmark said of each.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RATE = 16_000
BASE = ("librispeech-1995-1837-0001.wav", "librispeech-2412-153948-0000.flac")  # in the library first


@dataclass
class Kind:
    """One kind of input in the batch folder: how to make it and what ingest must say of it."""

    name: str  # its file name in the folder (what the line must name)
    make: Callable[[Path, "Sources"], None]
    allowed: tuple[str, ...] = ("ok",)  # statuses that are right; () = no line at all (not a recording)
    says: str = ""  # a regex the line must match
    quiet: bool = False  # silence, noise or music: at most 1 indexed word a minute
    stated: bool = False  # truncated, and its header states its length: an ok line must warn
    long: bool = False  # full mode only
    quick: bool = False  # also in quick mode


# --- the inputs ----------------------------------------------------------------------------------

def ff(*args) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *map(str, args)], check=True)


class Sources:
    """Speech to cut and convert, made once: a real recording and espeak-ng sentences."""

    def __init__(self, folder: Path, audio: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.real = audio
        self.speech = folder / "speech.wav"  # 11 s of JFK, 16 kHz mono
        ff("-i", audio / "jfk-inaugural-1961-excerpt.flac", "-ac", "1", "-ar", RATE, self.speech)
        self._n = 0

    def spoken(self, text: str | None = None) -> Path:
        """A new espeak-ng recording (distinct text, so distinct content): each is its own recording."""
        self._n += 1
        text = text or f"Recording number {self._n}. The shipment of {self._n * 7} crates left the harbour at dawn."
        out = self.folder / f"espeak-{self._n}.wav"
        subprocess.run(["espeak-ng", "-w", str(out), text], check=True, capture_output=True)
        return out

    def encoded(self, ext: str, *args) -> Path:
        """The speech in another format (cached by extension and arguments)."""
        out = self.folder / f"speech-{abs(hash(args)) % 10**8}.{ext}"
        if not out.exists():
            ff("-i", self.speech, *args, out)
        return out


def copy_of(src: Callable[["Sources"], Path]) -> Callable[[Path, Sources], None]:
    return lambda path, s: shutil.copyfile(src(s), path)


def ffmake(*args, src: bool = True) -> Callable[[Path, Sources], None]:
    """A kind made by one ffmpeg command (from the speech unless src=False; "{speech}" names it)."""
    return lambda path, s: ff(*(["-i", s.speech] if src else []),
                              *(s.speech if a == "{speech}" else a for a in args), path)


def cut(ext: str, args: tuple, offset: int | float) -> Callable[[Path, Sources], None]:
    """The speech encoded, then cut at a byte offset (a float: that share of the file)."""
    def make(path: Path, s: Sources) -> None:
        data = s.encoded(ext, *args).read_bytes()
        path.write_bytes(data[:int(len(data) * offset) if isinstance(offset, float) else offset])
    return make


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE, channels: int = 1) -> None:
    """16-bit PCM WAV with the stdlib writer."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def music(path: Path, _s: Sources, seconds: float = 60.0, seed: int = 0) -> None:
    """A melody over chords: harmonic tones with plucked envelopes, no voice."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    out = np.zeros_like(t)
    chords = [(261.6, 329.6, 392.0), (220.0, 261.6, 329.6), (174.6, 220.0, 261.6), (196.0, 246.9, 293.7)]
    for bar in range(int(seconds / 2)):
        lo, hi = bar * 2 * RATE, min(len(t), (bar + 1) * 2 * RATE)
        tt = t[lo:hi] - t[lo]
        for f in chords[bar % 4]:
            out[lo:hi] += 0.12 * np.sin(2 * np.pi * f * tt) * np.exp(-tt * 0.8)
        for beat in range(4):  # the melody: a note of the chord an octave up, each half second
            b0 = lo + beat * RATE // 2
            f = 2 * chords[bar % 4][rng.integers(3)]
            nt = t[b0:min(hi, b0 + RATE // 2)] - t[b0]
            out[b0:b0 + len(nt)] += 0.2 * (np.sin(2 * np.pi * f * nt) + 0.3 * np.sin(4 * np.pi * f * nt)) * np.exp(-nt * 4)
    write_wav(path, out / max(1.0, np.abs(out).max()))


def names_made(path: Path, s: Sources) -> None:
    shutil.copyfile(s.spoken(), path)


def zero_length_wav(path: Path, _s: Sources) -> None:
    write_wav(path, np.zeros(0))


def random_bytes(size: int, seed: int) -> Callable[[Path, Sources], None]:
    return lambda path, s: path.write_bytes(np.random.default_rng(seed).bytes(size))


def text(path: Path, _s: Sources) -> None:
    path.write_text("Minutes of the meeting.\nPresent: all.\nNot audio at all.\n" * 50)


def folder_kinds() -> list[Kind]:
    """The kinds that go into one folder and one `ingest` run."""
    k: list[Kind] = []
    for ext in ("wav", "mp3", "flac", "m4a", "ogg", "opus"):
        k.append(Kind(f"empty.{ext}", lambda p, s: p.write_bytes(b""), ("FAIL",), r"empty file", quick=ext == "wav"))
    formats = {"wav": ("wav", ()), "mp3": ("mp3", ("-c:a", "libmp3lame")), "flac": ("flac", ()),
               "m4a": ("m4a", ("-c:a", "aac")), "m4a-faststart": ("m4a", ("-c:a", "aac", "-movflags", "+faststart")),
               "ogg": ("ogg", ("-c:a", "libvorbis"))}
    for label, (ext, args) in formats.items():
        for offset in (10, 100, 1000, 5000, 0.5):
            tag = f"{int(offset * 100)}pct" if isinstance(offset, float) else f"{offset}B"
            k.append(Kind(f"truncated-{label}-{tag}.{ext}", cut(ext, args, offset), ("ok", "FAIL"),
                          stated=ext in ("wav", "flac") or label == "m4a-faststart",
                          quick=(label, offset) in (("wav", 5000), ("flac", 0.5))))
    for i, ext in enumerate(("wav", "mp3", "flac", "m4a", "ogg", "opus", "webm", "mp4", "mkv")):
        k.append(Kind(f"random.{ext}", random_bytes(50_000, i), ("FAIL",), quick=ext == "mp3"))
    for ext in ("wav", "mp3", "flac", "m4a"):
        k.append(Kind(f"text.{ext}", text, ("FAIL",), r"not decodable|no audio", quick=ext == "wav"))
    k += [Kind("flac-named.mp3", copy_of(lambda s: s.encoded("flac")), ("ok",)),
          Kind("wav-named.ogg", ffmake("-af", "atempo=1.1", "-f", "wav")),
          Kind("mp3-named.wav", ffmake("-af", "atempo=0.9", "-f", "mp3")),
          Kind("ogg-named.m4a", ffmake("-af", "atempo=1.2", "-c:a", "libvorbis", "-f", "ogg")),
          Kind("zero-length.wav", zero_length_wav, ("FAIL",), r"no audio samples"),
          Kind("zero-length.flac", ffmake("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "0", src=False),
               ("FAIL",)),
          Kind("tenth-second.wav", ffmake("-t", "0.1"), quick=True),
          Kind("tenth-second.mp3", ffmake("-ss", "3", "-t", "0.1")),
          Kind("silence-60s.flac", ffmake("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "60", src=False),
               quiet=True),
          Kind("clipped-speech.wav", ffmake("-af", "volume=30dB,alimiter=limit=1:level=false")),
          Kind("hard-clipped-square.wav", ffmake("-af", "volume=40dB")),
          Kind("8khz.wav", ffmake("-ar", "8000")),
          Kind("44k1.wav", ffmake("-af", "atempo=1.05", "-ar", "44100")),
          Kind("96khz.wav", ffmake("-af", "atempo=0.95", "-ar", "96000")),
          Kind("24bit.wav", ffmake("-af", "atempo=1.15", "-c:a", "pcm_s24le", "-ar", "48000")),
          Kind("float32.wav", ffmake("-af", "atempo=0.85", "-c:a", "pcm_f32le")),
          Kind("float64.wav", ffmake("-af", "atempo=1.25", "-c:a", "pcm_f64le")),
          Kind("8bit-unsigned.wav", ffmake("-af", "atempo=0.8", "-c:a", "pcm_u8")),
          Kind("alaw.wav", ffmake("-af", "atempo=1.3", "-c:a", "pcm_alaw", "-ar", "8000")),
          Kind("mulaw.wav", ffmake("-af", "atempo=0.75", "-c:a", "pcm_mulaw", "-ar", "8000")),
          Kind("6-channel.wav", ffmake("-af", "pan=5.1|FL=c0|FR=c0|FC=c0|LFE=c0|BL=c0|BR=c0")),
          Kind("6-channel.flac", ffmake("-af", "atempo=1.1,pan=5.1|FL=c0|FR=c0|FC=c0|LFE=0*c0|BL=0*c0|BR=0*c0")),
          Kind("stereo-one-side.wav", ffmake("-af", "atempo=0.9,pan=stereo|c0=c0|c1=0*c0")),
          Kind("video-no-audio.mp4", ffmake("-f", "lavfi", "-i", "color=c=blue:s=64x64:d=3", "-c:v", "mpeg4",
                                            src=False), ("FAIL",), r"no audio track", quick=True),
          Kind("video-no-audio.mkv", ffmake("-f", "lavfi", "-i", "color=c=red:s=64x64:d=3", "-c:v", "mpeg4",
                                            src=False), ("FAIL",), r"no audio track"),
          Kind("video-no-audio.webm", ffmake("-f", "lavfi", "-i", "color=c=green:s=64x64:d=3", "-c:v", "libvpx",
                                             src=False), ("FAIL",), r"no audio track")]
    k += _video_kinds() + _quiet_kinds() + _link_kinds() + _name_kinds()
    k += [Kind("unreadable.wav", _unreadable, ("FAIL",), r"cannot be read|ermission", quick=True),
          Kind("fifo.wav", lambda p, s: os.mkfifo(p), ()),
          Kind("dev-zero-link.wav", lambda p, s: p.symlink_to("/dev/zero"), ()),
          Kind("base-copy-other-name.wav", copy_of(lambda s: s.real / BASE[0]), ("skip",), r"same content")]
    return k


def _unreadable(path: Path, s: Sources) -> None:
    shutil.copyfile(s.spoken(), path)
    path.chmod(0)


def _video_kinds() -> list[Kind]:
    color = ["-f", "lavfi", "-i", "color=c=gray:s=64x64:d=11"]
    return [Kind("talk.mp4", ffmake(*color, "-i", "{speech}", "-shortest", "-c:v", "libx264", "-c:a", "aac",
                                     src=False)),
            Kind("talk.mkv", ffmake(*color, "-i", "{speech}", "-af", "atempo=1.1", "-shortest", "-c:v", "mpeg4",
                                    "-c:a", "libopus", src=False)),
            Kind("talk.webm", ffmake(*color, "-i", "{speech}", "-af", "atempo=0.9", "-shortest", "-c:v", "libvpx",
                                     "-c:a", "libopus", src=False)),
            Kind("talk.mov", ffmake(*color, "-i", "{speech}", "-af", "atempo=1.2", "-shortest", "-c:v", "mpeg4",
                                    "-c:a", "aac", src=False)),
            Kind("talk.avi", ffmake(*color, "-i", "{speech}", "-af", "atempo=0.8", "-shortest", "-c:v", "mpeg4",
                                    "-c:a", "libmp3lame", src=False))]


def _quiet_kinds() -> list[Kind]:
    def noise(color: str, seconds: int):
        return ffmake("-f", "lavfi", "-i", f"anoisesrc=color={color}:amplitude=0.3:d={seconds}:r=16000", src=False)

    sox_chord = lambda p, s: subprocess.run(  # noqa: E731
        ["sox", "-n", "-r", "16000", "-c", "1", str(p), "synth", "40", "pluck", "C3", "pluck", "E3", "pluck", "G3",
         "tremolo", "4", "40", "fade", "0.5", "40", "0.5"], check=True, capture_output=True)
    return [Kind("white-noise-60s.flac", noise("white", 60), quiet=True, quick=True),
            Kind("pink-noise-60s.flac", noise("pink", 60), quiet=True),
            Kind("brown-noise-60s.flac", noise("brown", 60), quiet=True),
            Kind("music-chords-60s.wav", music, quiet=True),
            Kind("music-sine-melody-60s.flac", ffmake(
                "-f", "lavfi", "-i", "aevalsrc=0.3*sin(2*PI*t*(440+220*sin(2*PI*t/4)))+0.2*sin(2*PI*t*330):s=16000:d=60",
                src=False), quiet=True),
            Kind("music-sox-chord-40s.wav", sox_chord, quiet=True),
            Kind("white-noise-1h.flac", noise("white", 3600), quiet=True, long=True),
            Kind("pink-noise-1h.flac", noise("pink", 3600), quiet=True, long=True)]


def _link_kinds() -> list[Kind]:
    return [Kind("dangling-link.wav", lambda p, s: p.symlink_to("nowhere/gone.wav"), ("FAIL",),
                 r"broken symbolic link|no such file", quick=True),
            Kind("loop-a.wav", lambda p, s: (p.symlink_to("loop-b.wav"), p.with_name("loop-b.wav").symlink_to(p.name)),
                 ("FAIL",), r"loop|no such file", quick=True),
            Kind("loop-b.wav", lambda p, s: None, ("FAIL",), r"loop|no such file", quick=True),
            Kind("up-loop.wav", lambda p, s: p.symlink_to("."), ()),  # a link to its own folder: not followed
            Kind("good-link.wav", lambda p, s: p.symlink_to(s.spoken()))]


def _name_kinds() -> list[Kind]:
    names = ["with spaces in it.wav", "Ünïcödé 日本語 ελληνικά.wav", "new\nline.wav", "-leading-dash.wav",
             "tab\there.wav", "\x1b[31mred.wav", "rtl-\u202egnp.wav", os.fsdecode(b"not-utf8-\xff\xfe.wav"),
             "quote's \"and\" $dollar `tick`.wav", "glob*?[x].wav", ("long-" * 49) + ".wav"]
    # A name that is not UTF-8 cannot be kept in the catalog (SQLite and JSON hold text): refused with advice.
    return [Kind(n, names_made, ("FAIL",), r"not valid UTF-8.*rename") if n.startswith("not-utf8") else
            Kind(n, names_made, quick=n in ("new\nline.wav", "-leading-dash.wav")) for n in names]


def make_kinds(kinds: list[Kind], folder: Path, sources: Sources) -> list[str]:
    """Write every kind into the folder; returns the errors of kinds that could not be made."""
    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    for kind in kinds:
        path = folder / kind.name
        try:
            kind.make(path, sources)
        except (OSError, subprocess.CalledProcessError) as e:
            errors.append(f"{kind.name!r}: {e}")
    return errors
