"""Stage 8: a transcript out as SRT, WebVTT, JSON, Markdown or plain text, with speakers and redactions.

SRT is composed by `srt` and WebVTT by `webvtt-py` (cue times included), never by hand. Cues are one per
segment, prefixed `Speaker: ` when the speaker is known; WebVTT cues also carry each word's start as a
cue timestamp. Segments flagged as likely hallucinations (kept out of the index) are left out of the
subtitle and text formats; JSON is the whole transcript. JSON and Markdown also carry the recording's
summary and chapters when one is kept (summary.py).

Redactions recorded for a recording (by `earmark redact`, in LIBRARY/redactions/HASH.json) apply to
every export of it: words inside a redacted range read "[redacted]".
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import replace
from pathlib import Path

from .errors import ConfigError, RangeError
from .records import Segment, Transcript, Word, span
from .atomic import write_atomic

REDACTED = "[redacted]"
Range = tuple[float, float]


# --- times and ranges typed by users ---------------------------------------------------------
def parse_time(text: str) -> float:
    """Seconds from `12.5`, `01:20` or `1:02:03.5`."""
    parts = text.strip().split(":")
    try:
        if len(parts) > 3 or any(p.strip() == "" for p in parts):
            raise ValueError
        values = [float(p) for p in parts]
    except ValueError:
        raise RangeError(f"{text!r} is not a time: give seconds (12.5) or mm:ss (01:20)") from None
    seconds = 0.0
    for v in values:
        seconds = seconds * 60 + v
    if seconds < 0 or (len(values) > 1 and any(v >= 60 for v in values[1:])):
        raise RangeError(f"{text!r} is not a time: give seconds (12.5) or mm:ss (01:20)")
    return seconds


def parse_ranges(text: str) -> list[Range]:
    """`12.5-14.0,80-95` (or mm:ss on either side) as sorted, merged (start, end) ranges."""
    ranges = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        ends = item.split("-")
        if len(ends) != 2:
            raise RangeError(f"{item!r} is not a range: write START-END, e.g. 12.5-14.0 or 01:20-01:35")
        try:
            start, end = parse_time(ends[0]), parse_time(ends[1])
        except RangeError as e:
            raise RangeError(f"range {item!r}: {e}") from None
        if end <= start:
            raise RangeError(f"range {item!r} ends before it starts")
        ranges.append((start, end))
    if not ranges:
        raise RangeError("no ranges given: write START-END[,START-END...], e.g. 12.5-14.0,80-95")
    return merge(ranges)


def merge(ranges: list[Range]) -> list[Range]:
    """Ranges sorted, with overlapping or touching ones joined."""
    out: list[Range] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


# --- redaction of a transcript ---------------------------------------------------------------
def _hit(start: float, end: float, ranges: list[Range]) -> bool:
    return any(end > a and start < b for a, b in ranges)


def redact_transcript(t: Transcript, ranges: list[Range]) -> Transcript:
    """The transcript with every word (or wordless segment) overlapping a range replaced by "[redacted]"."""
    if not ranges:
        return t
    t = replace(t, segments=tuple(_redact_segment(s, ranges) for s in t.segments))
    if getattr(t, "translations", ()):  # an English rendering of redacted speech would leak it
        t = replace(t, translations=tuple(_redact_segment(s, ranges) for s in t.translations))
    return t


def _redact_segment(seg: Segment, ranges: list[Range]) -> Segment:
    if not _hit(seg.start, seg.end, ranges):
        return seg
    if not seg.words:
        return replace(seg, text=REDACTED)
    words: list[Word] = []
    for w in seg.words:
        if not _hit(w.start, w.end, ranges):
            words.append(w)
        elif words and words[-1].text == " " + REDACTED:  # one marker per run of redacted words
            words[-1] = replace(words[-1], end=w.end)
        else:
            words.append(Word(w.start, w.end, " " + REDACTED, 0.0))
    return replace(seg, words=tuple(words), text="".join(w.text for w in words).strip())


def redactions_path(root: Path, sha256: str) -> Path:
    """Where a recording's recorded redactions live: LIBRARY/redactions/HASH.json."""
    return Path(root) / "redactions" / f"{sha256}.json"


def recorded_redactions(root: Path, sha256: str) -> list[Range]:
    """The ranges `earmark redact` has recorded for a recording (none if never redacted)."""
    path = redactions_path(root, sha256)
    if not path.exists():
        return []
    return [tuple(r) for r in json.loads(path.read_text())["ranges"]]


def record_redactions(root: Path, sha256: str, ranges: list[Range]) -> list[Range]:
    """Add ranges to a recording's recorded redactions; returns all of them, merged."""
    merged = merge(recorded_redactions(root, sha256) + list(ranges))
    write_atomic(redactions_path(root, sha256), json.dumps({"ranges": merged}, indent=1).encode())
    return merged


# --- formats ---------------------------------------------------------------------------------
def _shown(t: Transcript) -> list[Segment]:
    return [s for s in t.segments if s.flag is None and s.text.strip()]


def _who(seg: Segment) -> str:
    return f"{seg.speaker}: " if seg.speaker else ""


def to_srt(t: Transcript) -> str:
    """SubRip: one numbered cue per segment."""
    from datetime import timedelta

    import srt

    subs = [srt.Subtitle(i, timedelta(seconds=s.start), timedelta(seconds=max(s.end, s.start + 0.001)),
                         _who(s) + s.text.strip()) for i, s in enumerate(_shown(t), 1)]
    return srt.compose(subs)


def to_vtt(t: Transcript) -> str:
    """WebVTT: one cue per segment, each word after the first preceded by its start time."""
    from webvtt import Caption, WebVTT
    from webvtt.models import Timestamp

    captions = []
    for s in _shown(t):
        end = max(s.end, s.start + 0.001)
        captions.append(Caption(str(Timestamp.from_seconds(s.start)), str(Timestamp.from_seconds(end)),
                                html.escape(_who(s), quote=False) + _vtt_words(s, end, Timestamp)))
    return WebVTT(captions=captions).content


def _vtt_words(seg: Segment, end: float, timestamp) -> str:
    if not seg.words:
        return html.escape(seg.text.strip(), quote=False)
    parts = []
    for w in seg.words:
        text = html.escape(w.text.strip(), quote=False)
        # A cue timestamp must lie strictly inside its cue (WebVTT spec), so edge words go untimed.
        inside = bool(parts) and seg.start < w.start < end
        parts.append(f"<{timestamp.from_seconds(w.start)}>{text}" if inside else text)
    return re.sub(r"\s+", " ", " ".join(p for p in parts if p))


def to_json(t: Transcript, summary: dict | None = None) -> str:
    """The transcript dict: segments with speakers and word times (and its summary, when one is kept)."""
    return json.dumps({**t.to_dict(), **({"summary": summary} if summary else {})}, ensure_ascii=False,
                      indent=1) + "\n"


def to_txt(t: Transcript) -> str:
    """`[mm:ss–mm:ss] Speaker: text`, one line per segment."""
    return "".join(f"[{span(s.start, s.end)}] {_who(s)}{s.text.strip()}\n" for s in _shown(t))


def to_md(t: Transcript, summary: dict | None = None) -> str:
    """Markdown: the summary and chapters (when one is kept), each sentence with its cited times, then
    the transcript, a line per segment."""
    def cited(p: dict) -> str:
        return " ".join(f"({span(c['start'], c['end'])})" for c in p["citations"])
    out = [f"# {t.file_name}\n"]
    if summary and summary.get("chapters"):
        out += ["## Summary\n"] + [f"- {p['text']} {cited(p)}" for p in summary["summary"]] + ["", "## Chapters\n"]
        for c in summary["chapters"]:
            out += [f"### {span(c['start'], c['end'])} {c['title']}\n"] + \
                [f"- {p['text']} {cited(p)}" for p in c["points"]] + [""]
    out += ["## Transcript\n"] + [f"**[{span(s.start, s.end)}]** {_who(s)}{s.text.strip()}  " for s in _shown(t)]
    return "\n".join(out) + "\n"


FORMATS = {"srt": to_srt, "vtt": to_vtt, "json": to_json, "txt": to_txt, "md": to_md}
WITH_SUMMARY = ("json", "md")  # formats that carry a recording's kept summary and chapters


def render(t: Transcript, fmt: str, ranges: list[Range] = (), summary: dict | None = None) -> str:
    """A transcript in one of FORMATS, with the given ranges redacted; json and md carry ``summary``
    (`summary.Summary.to_json`, already without the redacted ranges) when given."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    t = redact_transcript(t, list(ranges))
    return FORMATS[fmt](t, summary) if fmt in WITH_SUMMARY else FORMATS[fmt](t)
