"""`earmark summary FILE`: a recording's cited summary and chapters (summary.py), made on request or kept.

A thin edge like cli.py, which registers it with `register` and lends it `ingest --summarize`
through `show`; library errors become one line and an exit code in cli.main.
"""

from __future__ import annotations

import json

import click

from .records import span


def show(s, as_json: bool = False) -> None:
    """Print a summary: its sentences, then its chapters with their points, each with its citations."""
    if as_json:
        click.echo(json.dumps(s.to_json(), ensure_ascii=False, indent=2))
        return

    def cites(p) -> str:
        return "  " + " ".join(f"[{c.file} @ {span(c.start, c.end)}]" for c in p.citations)
    click.echo(f"{s.file}")
    if not s.chapters:
        click.echo("  nothing was said in it (no speech was transcribed)")
        return
    for p in s.summary:
        click.echo(f"  {p.text}{cites(p)}")
    if not s.summary:
        click.echo("  (no summary sentence was borne out by the transcript)")
    click.echo("chapters:")
    for c in s.chapters:
        click.echo(f"  {span(c.start, c.end)}  {c.title}")
        for p in c.points:
            click.echo(f"      - {p.text}{cites(p)}")
    if s.dropped:
        click.echo(f"({s.dropped} of {s.written} sentences the model wrote were not borne out by their cited "
                   "transcript and are not shown)", err=True)


def make(lib, embedder, files: list[str], as_json: bool = False, again: bool = False) -> None:
    """Summarise recordings of a library (by name as ingested, path or hash) and print each summary."""
    from .config import SummaryOptions
    from .summary import summarize

    shas = [lib.find(f).sha256 for f in files]  # an unknown name fails before any model runs
    for sha in shas:  # (a summary is one file written atomically: no writer lock is held for minutes)
        show(summarize(lib, embedder, sha, SummaryOptions(), again=again), as_json)


@click.command()
@click.argument("file")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"file","id","summary":[{"text","citations"}],"chapters":[{"start","end","title","points"}],'
                   '"written","dropped","titles_quoted"}.')
@click.option("--again", is_flag=True, help="Make it again even if one kept in the library is up to date.")
@click.pass_obj
def summary(obj, file: str, as_json: bool, again: bool) -> None:
    """Summary and chapters of a recording (FILE: name as ingested, path or hash), each sentence cited and
    checked against the transcript; made once, then kept in the library."""
    make(*obj.open(), [file], as_json, again)


def register(group: click.Group) -> None:
    """Add `summary` to the `earmark` group."""
    group.add_command(summary)
