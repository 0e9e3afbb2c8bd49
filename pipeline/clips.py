"""Audio evidence cut from the original: sample-accurate clips and redacted copies, each with a manifest.

Both read the ORIGINAL file, at the path the catalog recorded and only after its SHA-256 still matches,
and run one ffmpeg process: decode → trim by sample (atrim) or silence per sample (aeval) → encode once.
WAV output keeps the source's sample rate, channels and bit depth, so a WAV clip of a WAV holds the
source's own samples. `-bitexact` makes outputs reproducible: the same cut twice has the same SHA-256.
The manifest `OUT.json` beside each output says where it came from and hashes both ends.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .audio import sha256_file
from .audit import log_event
from .custody import require_intact
from .errors import AudioError, ConfigError, CustodyError, RangeError
from .export import Range, record_redactions, redact_transcript, to_json, to_txt
from .records import Answer, Transcript, during, now
from .atomic import write_atomic
from .store import Library, Recording

log = logging.getLogger(__name__)

CITATION_PAD = 0.2  # seconds added around a cited span: Whisper's word times often clip its edges


@dataclass(frozen=True)
class SourceInfo:
    sample_rate: int
    channels: int
    sample_fmt: str  # the decoder's sample format as ffmpeg names it: s16, s32, fltp, ...
    bits: int  # bits per raw sample when the codec says (24 for 24-bit FLAC), else 0


def probe(path: Path) -> SourceInfo:
    """Sample rate, channels and sample format of a file's first audio stream (ffprobe)."""
    if shutil.which("ffprobe") is None:
        raise AudioError("ffprobe (part of ffmpeg) is not installed: run `apt-get install ffmpeg`")
    cmd = ["ffprobe", "-v", "error", "-select_streams", "a:0", "-of", "json", "-show_entries",
           "stream=sample_rate,channels,sample_fmt,bits_per_raw_sample", str(path)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    streams = json.loads(r.stdout or "{}").get("streams") if r.returncode == 0 else None
    if not streams:
        raise AudioError(f"{path.name}: ffprobe finds no audio stream ({_last_line(r.stderr)})")
    s = streams[0]
    bits = s.get("bits_per_raw_sample", "0")
    return SourceInfo(int(s["sample_rate"]), int(s["channels"]), s["sample_fmt"], int(bits) if bits.isdigit() else 0)


def _wav_codec(info: SourceInfo) -> list[str]:
    fmt = info.sample_fmt.rstrip("p")  # planar or not, the samples are the same
    if fmt in ("u8", "s16"):
        return ["-c:a", "pcm_s16le"]
    if fmt == "s32":
        return ["-c:a", "pcm_s24le" if info.bits == 24 else "pcm_s32le"]
    return ["-c:a", "pcm_f32le"]  # float decoders (mp3, aac, opus): keep their samples as they are


# Output formats by extension; each keeps the source's sample rate and channels.
ENCODERS = {
    ".wav": _wav_codec,
    ".flac": lambda info: ["-c:a", "flac"] + (["-sample_fmt", "s32"] if info.bits > 16 else []),
    ".mp3": lambda info: ["-c:a", "libmp3lame", "-q:a", "2"],
}


def _ffmpeg(src: Path, out: Path, audio_filter: str, info: SourceInfo) -> None:
    encoder = ENCODERS.get(out.suffix.lower())
    if encoder is None:
        raise ConfigError(f"{out.name}: unknown output format; name the output {', '.join('*' + e for e in ENCODERS)}")
    if out.exists() and out.resolve() == src.resolve():
        raise CustodyError(f"{out}: that is the original; earmark never writes over an original")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.partial{out.suffix}")
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), "-map", "0:a:0", "-af", audio_filter,
           *encoder(info), "-map_metadata", "-1", "-bitexact", str(tmp)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError as e:
        raise AudioError("ffmpeg is not installed: run `apt-get install ffmpeg`") from e
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise AudioError(f"{src.name}: ffmpeg could not write {out.name} ({_last_line(r.stderr)})")
    os.replace(tmp, out)


def _last_line(text: str) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1][:200] if lines else "no message"


def manifest_path(out: Path) -> Path:
    """Where an output's manifest goes: beside it, `out.wav` → `out.wav.json`."""
    return out.with_name(out.name + ".json")


END_SLACK = 0.05  # seconds: a duration is stored to the millisecond, a player's time may round up


def _check_span(rec: Recording, start: float, end: float) -> None:
    if not 0 <= start < end:
        raise RangeError(f"{start:g}–{end:g} s is not a span: START must be ≥ 0 and before END")
    if rec.duration and start >= rec.duration:
        raise RangeError(f"{rec.file_name} is {rec.duration:.2f} s long; {start:g} s is past its end")
    if rec.duration and end > rec.duration + END_SLACK:
        raise RangeError(f"{rec.file_name} is {rec.duration:.2f} s long; END {end:g} s is past its end: "
                         f"give an END of at most {rec.duration:.2f}")


def segments_in(t: Transcript, start: float, end: float) -> list[dict]:
    """The segments overlapping [start, end], with their times and speakers."""
    return [{"id": s.id, "start": s.start, "end": s.end, "speaker": s.speaker, "text": s.text.strip()}
            for s in during(t.segments, start, end)]


def _provenance(t: Transcript) -> dict:
    return {"transcript_model": t.model, "transcript_created": t.created, "earmark_version": __version__,
            "exported_at": now()}


def _write_manifest(out: Path, manifest: dict) -> None:
    write_atomic(manifest_path(out), (json.dumps(manifest, ensure_ascii=False, indent=1) + "\n").encode())


def clip(library: Library, rec: Recording, start: float, end: float, out: Path, extra: dict | None = None) -> dict:
    """Cut [start, end) seconds of the original into OUT (sample-exact) and write OUT.json; returns it."""
    src = require_intact(rec)
    _check_span(rec, start, end)
    info = probe(src)
    first, last = round(start * info.sample_rate), round(end * info.sample_rate)
    _ffmpeg(src, out, f"atrim=start_sample={first}:end_sample={last}", info)
    t = library.transcript(rec.sha256)
    segs = segments_in(t, start, end)
    manifest = {
        "kind": "earmark clip", "source_file": rec.file_name, "source_path": rec.path,
        "source_sha256": rec.sha256, "start": start, "end": end, "start_sample": first, "end_sample": last,
        "sample_rate": info.sample_rate, "channels": info.channels,
        "clip_file": out.name, "clip_sha256": sha256_file(out),
        "segments": segs, "text": " ".join(s["text"] for s in segs), **_provenance(t), **(extra or {})}
    _write_manifest(out, manifest)
    log_event(library.root, "clip", file=rec.file_name, sha256=rec.sha256, start=start, end=end,
              out=str(out.resolve()), clip_sha256=manifest["clip_sha256"])
    return manifest


def redact(library: Library, rec: Recording, ranges: list[Range], out: Path, tone: bool = False) -> dict:
    """A copy of the original with `ranges` silenced (or a 1 kHz tone), its redacted transcript
    (OUT.transcript.json and .txt) and OUT.json; the ranges are recorded so exports redact them too."""
    src = require_intact(rec)
    for a, b in ranges:
        _check_span(rec, a, b)
    info = probe(src)
    inside = "+".join(f"gte(t\\,{a:.6f})*lt(t\\,{b:.6f})" for a, b in ranges)
    fill = "0.1*sin(2*PI*1000*t)" if tone else "0"  # -20 dBFS tone
    _ffmpeg(src, out, f"aeval=if({inside}\\,{fill}\\,val(ch)):c=same", info)
    t = redact_transcript(library.transcript(rec.sha256), ranges)
    texts = {".transcript.json": to_json(t), ".transcript.txt": to_txt(t)}
    for suffix, text in texts.items():
        write_atomic(out.with_name(out.name + suffix), text.encode())
    manifest = {
        "kind": "earmark redaction", "source_file": rec.file_name, "source_path": rec.path,
        "source_sha256": rec.sha256, "ranges": [list(r) for r in ranges], "fill": "tone" if tone else "silence",
        "sample_rate": info.sample_rate, "channels": info.channels,
        "output_file": out.name, "output_sha256": sha256_file(out),
        "transcripts": {out.name + s: sha256_file(out.with_name(out.name + s)) for s in texts},
        **_provenance(t)}
    _write_manifest(out, manifest)
    recorded = record_redactions(library.root, rec.sha256, ranges)
    log_event(library.root, "redact", file=rec.file_name, sha256=rec.sha256, ranges=manifest["ranges"],
              fill=manifest["fill"], out=str(out.resolve()), output_sha256=manifest["output_sha256"],
              recorded_ranges=[list(r) for r in recorded])
    return manifest


def clip_citations(library: Library, answer: Answer, folder: Path) -> list[Path]:
    """One WAV clip and manifest per citation of an answer, in FOLDER; returns the clips' paths."""
    paths = []
    for c in answer.citations:
        rec = library.find(c.file_hash or c.file)
        start = max(0.0, c.start - CITATION_PAD)
        end = min(rec.duration or c.end + CITATION_PAD, c.end + CITATION_PAD)
        out = Path(folder) / f"{c.n}-{Path(c.file).stem}-{start:.2f}-{end:.2f}.wav"
        clip(library, rec, round(start, 3), round(end, 3), out,
             extra={"question": answer.question, "answer": answer.answer, "citation": c.to_json()})
        paths.append(out)
    return paths
