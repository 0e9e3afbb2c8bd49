"""Stage 3: group consecutive segments into passages of roughly 20-60 s for retrieval.

A passage ends at a sentence boundary once it is long enough, at the latest when it would pass the
maximum, and early at a long silence. The next passage repeats the last segment(s) of the previous
one so that an answer straddling the boundary is whole in at least one passage. Times are the exact
start of the first and end of the last segment: nothing is estimated.
"""

from __future__ import annotations

from dataclasses import replace

from .config import ChunkOptions
from .records import SENTENCE_END, Passage, Segment, Transcript, during

def passages(transcript: Transcript, options: ChunkOptions = ChunkOptions()) -> list[Passage]:
    """Passages over a transcript's indexable segments, then over its English renderings, if any."""
    voices = len({s.speaker for s in transcript.segments if s.speaker})
    spoken = [_passage(transcript, str(i), g, voices) for i, g in enumerate(_groups(transcript.segments, options))]
    english = [replace(_passage(transcript, f"t{i}", g, voices), translated=True,
                       language=_spoken_language(transcript, g))
               for i, g in enumerate(_groups(transcript.translations, options))]
    return spoken + english


def _spoken_language(transcript: Transcript, group: list[Segment]) -> str:
    """The language spoken under some translated segments (their text is English)."""
    langs = [s.language for s in during(transcript.segments, group[0].start, group[-1].end)]
    return max(set(langs), key=langs.count) if langs else "en"


def _groups(segments, options: ChunkOptions) -> list[list[Segment]]:
    """Consecutive unflagged segments grouped into passages (see the module docstring)."""
    groups: list[list[Segment]] = []
    current: list[Segment] = []
    carried = 0  # how many segments at the head of `current` repeat the previous passage
    for seg in (s for s in segments if s.flag is None):
        if current and _must_break(current, seg, options):
            if len(current) > carried:
                groups.append(current)
            current = _tail(current, options)
            # Overlap never carries across a long silence or past the maximum length.
            if current and _must_break(current, seg, options):
                current = []
            carried = len(current)
        current.append(seg)
        if _long_enough(current, options) and seg.text.rstrip().rstrip('"\'»”').endswith(SENTENCE_END):
            groups.append(current)
            current = _tail(current, options)
            carried = len(current)
    if len(current) > carried:
        groups.append(current)
    return groups


def _tail(group: list[Segment], options: ChunkOptions) -> list[Segment]:
    return group[-options.overlap_segments:] if options.overlap_segments else []


def _long_enough(group: list[Segment], options: ChunkOptions) -> bool:
    return group[-1].end - group[0].start >= options.min_seconds


def _must_break(group: list[Segment], nxt: Segment, options: ChunkOptions) -> bool:
    too_long = nxt.end - group[0].start > options.max_seconds
    long_gap = nxt.start - group[-1].end > options.max_gap
    return too_long or long_gap


def _passage(transcript: Transcript, index: str, group: list[Segment], voices: int) -> Passage:
    """A passage of the group's segments; their speakers are shown where the recording has several voices."""
    langs = [s.language for s in group]
    return Passage(
        id=f"{transcript.file_hash[:16]}:{index}", file_hash=transcript.file_hash,
        file_name=transcript.file_name, start=group[0].start, end=group[-1].end,
        text=passage_text(group, show_speakers=voices > 1), segment_ids=tuple(s.id for s in group),
        language=max(set(langs), key=langs.count))


def passage_text(group: list[Segment], show_speakers: bool = True) -> str:
    """The passage's words; with several known speakers, one line per turn starting `Speaker: `.

    A lone voice is not named in the text: "SPEAKER_1: " on every passage of a lecture says nothing
    and only dilutes search.
    """
    if not show_speakers:
        return " ".join(s.text for s in group)
    lines: list[str] = []
    last = None
    for s in group:
        if s.speaker and s.speaker != last:
            lines.append(f"{s.speaker}: {s.text}")
        elif lines:
            lines[-1] += " " + s.text
        else:
            lines.append(s.text)
        last = s.speaker
    return "\n".join(lines)
