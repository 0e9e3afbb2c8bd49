"""The evidence commands of `earmark`: verify, audit, delete, export, clip, redact, speakers.

A thin edge like cli.py (which registers these with `register`): the work is done in custody, export,
clips and speakers; library errors become one line and an exit code in cli.main.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .records import mmss


def _library(obj):
    from .store import Library

    return Library(obj.library_dir, obj.embed_model)


def _emit_json(data: dict) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


class TimeParam(click.ParamType):
    """Seconds (`12.5`) or mm:ss (`01:20`)."""

    name = "time"

    def convert(self, value, param, ctx):
        from .errors import RangeError
        from .export import parse_time

        try:
            return value if isinstance(value, float) else parse_time(str(value))
        except RangeError as e:
            self.fail(str(e), param, ctx)


@click.command()
@click.option("--audit", is_flag=True, help="Also check the audit log's chain (edits, deletions, reordering).")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"ok", "files": [{"file","path","status","expected","actual"}]} (+ "audit").')
@click.pass_obj
def verify(obj, audit: bool, as_json: bool) -> None:
    """Re-hash every original at its recorded path; exit 1 if any changed or went missing."""
    from rich.progress import Progress

    from .audit import verify_audit
    from .custody import verify_originals

    lib = _library(obj)
    with Progress(disable=obj.quiet or as_json, transient=True) as progress:
        task = progress.add_task("hashing originals", total=len(lib.recordings()))
        checks = verify_originals(lib, on_file=lambda c: progress.advance(task))
    log_check = verify_audit(lib.root) if audit else None
    ok = all(c.status == "ok" for c in checks) and (log_check is None or log_check.ok)
    if as_json:
        data = {"ok": ok, "files": [c.to_json() for c in checks]}
        if log_check is not None:
            data["audit"] = log_check.to_json()
        _emit_json(data)
    else:
        for c in checks:
            detail = {"ok": "", "missing": f"  missing from {c.path}",
                      "changed": f"  CHANGED: sha256 {c.actual} (ingested as {c.expected})"}[c.status]
            click.echo(f"{c.status:8} {c.file}{detail}")
        if log_check is not None:
            for n, problem in log_check.problems:
                click.echo(f"audit.jsonl line {n}: {problem}")
            click.echo(f"audit log: {log_check.entries} entries, " + ("intact" if log_check.ok else "TAMPERED"))
        bad = sum(c.status != "ok" for c in checks)
        click.echo(f"{len(checks)} originals checked, {bad} changed or missing")
    if not ok:
        sys.exit(1)


@click.group()
def audit() -> None:
    """The library's append-only audit log (LIBRARY/audit.jsonl)."""


@audit.command("questions")
@click.argument("state", type=click.Choice(["on", "off"]))
@click.pass_obj
def audit_questions(obj, state: str) -> None:
    """Log every question asked (on) or not (off); env EARMARK_AUDIT_QUESTIONS overrides it."""
    from .custody import set_questions

    set_questions(_library(obj), state == "on")
    click.echo(f"questions are {'now' if state == 'on' else 'no longer'} written to the audit log")


@audit.command("show")
@click.option("-n", "--last", "n", default=20, show_default=True, help="How many of the latest entries.")
@click.pass_obj
def audit_show(obj, n: int) -> None:
    """Print the latest audit entries, one JSON object a line."""
    from .audit import AUDIT_FILE

    path = Path(obj.library_dir).expanduser() / AUDIT_FILE
    for line in (path.read_text().splitlines() if path.exists() else [])[-n:]:
        click.echo(line)


@click.command()
@click.argument("file")
@click.pass_obj
def delete(obj, file: str) -> None:
    """Remove a recording from the library (catalog, both indexes); its transcripts move to LIBRARY/deleted/."""
    from .custody import delete_recording

    lib = _library(obj)
    rec = lib.find(file)
    dest = delete_recording(lib, rec)
    click.echo(f"deleted {rec.file_name} ({rec.sha256[:12]}); transcripts kept in {dest}")


@click.command()
@click.argument("file")
@click.option("--format", "fmt", type=click.Choice(["srt", "vtt", "json", "txt", "md"]), required=True,
              help="json and md also carry the summary and chapters, if `earmark summary` made them.")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here (default: standard output).")
@click.option("--ranges", default=None, help="Also redact these ranges, e.g. 12.5-14.0,80-95 (recorded "
                                             "redactions always apply).")
@click.pass_obj
def export(obj, file: str, fmt: str, out: Path | None, ranges: str | None) -> None:
    """Export a recording's transcript as SRT, WebVTT, JSON, Markdown or text, with speakers and redactions."""
    from .audio import sha256_file
    from .audit import log_event
    from .export import merge, parse_ranges, recorded_redactions, render
    from .atomic import write_atomic
    from .summary import current

    lib = _library(obj)
    rec = lib.find(file)
    redacted = merge(recorded_redactions(lib.root, rec.sha256) + (parse_ranges(ranges) if ranges else []))
    kept = current(lib, rec.sha256, redacted)
    text = render(lib.transcript(rec.sha256), fmt, redacted, kept.to_json() if kept else None)
    if out is None:
        click.echo(text, nl=False)
    else:
        write_atomic(out, text.encode())
        click.echo(f"wrote {out} ({fmt}{', ' + str(len(redacted)) + ' ranges redacted' if redacted else ''})",
                   err=True)
    log_event(lib.root, "export", file=rec.file_name, sha256=rec.sha256, format=fmt,
              out=str(out.resolve()) if out else "-", redacted=[list(r) for r in redacted],
              output_sha256=sha256_file(out) if out else None)


@click.command()
@click.argument("file")
@click.argument("start", type=TimeParam())
@click.argument("end", type=TimeParam())
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="out.wav (source rate, channels and bit depth), out.flac or out.mp3.")
@click.pass_obj
def clip(obj, file: str, start: float, end: float, out: Path) -> None:
    """Cut START–END (seconds or mm:ss) from the original, sample-exact, with a manifest OUT.json."""
    from .clips import clip as run_clip
    from .clips import manifest_path

    lib = _library(obj)
    m = run_clip(lib, lib.find(file), start, end, out)
    click.echo(f"wrote {out} ({mmss(start)}–{mmss(end)} of {m['source_file']}, sha256 {m['clip_sha256'][:12]}…) "
               f"and {manifest_path(out).name}")


@click.command()
@click.argument("file")
@click.option("--ranges", required=True, help="Spans to remove, e.g. 12.5-14.0,80-95 or 01:20-01:35.")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The redacted copy: out.wav, out.flac or out.mp3.")
@click.option("--tone", is_flag=True, help="A 1 kHz tone over the ranges instead of silence.")
@click.pass_obj
def redact(obj, file: str, ranges: str, out: Path, tone: bool) -> None:
    """A copy of the original with RANGES silenced, a redacted transcript and a manifest (the original is untouched)."""
    from .clips import manifest_path
    from .clips import redact as run_redact
    from .export import parse_ranges

    spans = parse_ranges(ranges)
    lib = _library(obj)
    with lib.writing():  # it records the ranges in the library: one writer at a time (lock.py)
        m = run_redact(lib, lib.find(file), spans, out, tone)
    click.echo(f"wrote {out} ({len(m['ranges'])} ranges replaced by {m['fill']}), "
               f"{', '.join(m['transcripts'])} and {manifest_path(out).name}")


@click.group()
def speakers() -> None:
    """The speaker labels of a recording."""


@speakers.command("list")
@click.argument("file")
@click.option("--json", "as_json", is_flag=True, help='Print {"speakers": [{"speaker","segments","seconds"}]}.')
@click.pass_obj
def speakers_list(obj, file: str, as_json: bool) -> None:
    """The speakers of FILE with their number of segments and time spoken."""
    from .speakers import speaker_times

    lib = _library(obj)
    times = speaker_times(list(lib.transcript(lib.find(file).sha256).segments))
    if as_json:
        return _emit_json({"speakers": [{"speaker": s, "segments": n, "seconds": round(t, 2)}
                                        for s, (n, t) in times.items()]})
    if not times:
        click.echo("no speaker labels (ingest with --speakers, or put NAME.rttm beside NAME.wav)")
    for s, (n, t) in times.items():
        click.echo(f"{s:20} {n:4} segments  {mmss(t)}")


@speakers.command("rename")
@click.argument("file")
@click.argument("old")
@click.argument("new")
@click.pass_obj
def speakers_rename(obj, file: str, old: str, new: str) -> None:
    """Call speaker OLD of FILE by NEW from now on (the transcript is versioned and re-indexed)."""
    from .ingest import rename_speaker

    lib, embedder = obj.open()
    with lib.writing():  # a new transcript version and a re-index: one writer at a time (lock.py)
        n = rename_speaker(lib, embedder, lib.find(file).sha256, old, new)
    click.echo(f"{old} → {new} in {n} segments of {lib.find(file).file_name}; re-indexed")


def register(group: click.Group) -> None:
    """Add the evidence commands to the `earmark` group."""
    for command in (verify, audit, delete, export, clip, redact, speakers):
        group.add_command(command)
