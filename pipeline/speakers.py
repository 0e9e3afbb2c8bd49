"""Speaker turns from a file (RTTM or STM) and their labels on segments and passages.

Who spoke when comes from a turns file given at ingest (`--speakers FILE`) or lying beside the
recording (`talk.rttm` / `talk.stm` for `talk.wav`); without one, from diarize.py (found by voice).
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
    text: str = ""  # the words of the turn, where the file gives them (STM)


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
                turns.append(Turn(float(f[3]), float(f[4]), f[2], " ".join(f[5:])))
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


def speaker_times(segments: list[Segment]) -> dict[str, tuple[int, float]]:
    """Each speaker label with its number of segments and seconds spoken, in order of first appearance."""
    out: dict[str, tuple[int, float]] = {}
    for s in segments:
        if s.speaker is not None:
            n, secs = out.get(s.speaker, (0, 0.0))
            out[s.speaker] = (n + 1, secs + s.end - s.start)
    return out


def rename_segments(segments: tuple[Segment, ...], old: str, new: str) -> tuple[Segment, ...]:
    """The segments with speaker label `old` relabelled `new` (two labels become one if `new` exists)."""
    known = speaker_times(list(segments))
    if old not in known:
        raise EarmarkError(f"no speaker {old!r} in this transcript; its speakers are: "
                           f"{', '.join(known) or 'none (ingest with --speakers first)'}")
    if not new.strip() or new.strip() != new or ":" in new:
        raise EarmarkError(f"{new!r} is not a usable speaker name (no leading/trailing spaces, no ':')")
    return tuple(replace(s, speaker=new) if s.speaker == old else s for s in segments)


def rename(library, embedder, sha256: str, old: str, new: str) -> int:
    """Rename a speaker in a recording's transcript (saved as a new version, the old one kept),
    re-index the recording so the name reaches search, answers and exports, and audit-log it.
    Returns the number of segments relabelled."""
    from .config import ChunkOptions
    from .custody import log_event
    from .ingest import index_transcript  # ingest imports this module
    from .store import now

    t = library.transcript(sha256)
    changes = {"segments": rename_segments(t.segments, old, new), "created": now()}
    if getattr(t, "translations", ()):
        changes["translations"] = tuple(replace(s, speaker=new) if s.speaker == old else s for s in t.translations)
    count = speaker_times(list(t.segments))[old][0]
    library.save_transcript(replace(t, **changes))
    index_transcript(library, embedder, library.transcript(sha256), ChunkOptions())
    log_event(library.root, "rename_speaker", file=t.file_name, sha256=sha256, old=old, new=new, segments=count)
    return count
