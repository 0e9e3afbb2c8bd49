"""Speaker turns from a file (RTTM or STM) and their labels on segments and passages.

Until earmark diarizes by itself, who spoke when comes from a turns file given at ingest
(`--speakers FILE`) or lying beside the recording (`talk.rttm` / `talk.stm` for `talk.wav`).
Segments are split where the speaker changes between their words, so every segment, and so every
citation, belongs to one speaker.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from .errors import EarmarkError
from .records import Segment, Word

SIDECARS = (".stm", ".rttm")  # .stm first: it usually carries names where .rttm carries ids


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: str


def read_turns(path: Path) -> list[Turn]:
    """Speaker turns from an RTTM (`SPEAKER file 1 start dur ... name ...`) or STM (`file ch name start end ...`)."""
    turns = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        f = line.split()
        if not f or line.startswith(";;"):
            continue
        try:
            if f[0] == "SPEAKER":
                start, dur = float(f[3]), float(f[4])
                turns.append(Turn(start, start + dur, f[7]))
            else:
                turns.append(Turn(float(f[3]), float(f[4]), f[2]))
        except (IndexError, ValueError) as e:
            raise EarmarkError(f"{Path(path).name} line {n}: not an RTTM or STM speaker turn") from e
    return sorted(turns, key=lambda t: t.start)


def sidecar(audio_path: Path) -> Path | None:
    """A speaker-turns file beside a recording, if there is one."""
    for ext in SIDECARS:
        candidate = audio_path.with_suffix(ext)
        if candidate.exists():
            return candidate
    return None


def speaker_at(turns: list[Turn], start: float, end: float) -> str | None:
    """The speaker whose turns overlap [start, end] most; the nearest turn within 1 s if none overlaps."""
    best, best_overlap = None, 0.0
    for t in turns:
        overlap = min(end, t.end) - max(start, t.start)
        if overlap > best_overlap:
            best, best_overlap = t.speaker, overlap
    if best is None and turns:
        mid = (start + end) / 2
        gap, nearest = min((min(abs(mid - t.start), abs(mid - t.end)), t.speaker) for t in turns)
        best = nearest if gap <= 1.0 else None
    return best


def label(segments: list[Segment], turns: list[Turn]) -> list[Segment]:
    """Segments split at speaker changes and labelled, renumbered in order."""
    out: list[Segment] = []
    for seg in segments:
        for piece in _split(seg, turns):
            out.append(replace(piece, id=len(out)))
    return out


def _split(seg: Segment, turns: list[Turn]) -> list[Segment]:
    if not seg.words:
        return [replace(seg, speaker=speaker_at(turns, seg.start, seg.end))]
    groups: list[tuple[str | None, list[Word]]] = []
    for w in seg.words:
        who = speaker_at(turns, w.start, w.end)
        if groups and groups[-1][0] == who:
            groups[-1][1].append(w)
        else:
            groups.append((who, [w]))
    return [replace(seg, start=ws[0].start, end=ws[-1].end, text="".join(w.text for w in ws).strip(),
                    words=tuple(ws), speaker=who) for who, ws in groups]
