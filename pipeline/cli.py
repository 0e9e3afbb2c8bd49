"""The `earmark` command: a thin edge over the pipeline. No pipeline logic lives here; library errors
become one line on stderr and a non-zero exit code."""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

import click

from . import allocator
from .errors import EarmarkError

try:
    from .config import AnswerOptions, EmbedOptions, TranscribeOptions, default_library
except EarmarkError as e:  # a malformed EARMARK_* setting, read as the options are defined
    click.echo(f"earmark: {e}", err=True)
    sys.exit(2)
from .cli_evidence import register as register_evidence
from .cli_summary import register as register_summary
from .records import mmss, span

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


class Ctx:
    """What every command needs: the library directory and the embedder setting."""

    def __init__(self, library: Path, embed_model: str | None, quiet: bool):
        # None: the library's own embedder (the default for a new library)
        self.library_dir, self.embed_model, self.quiet = library, embed_model, quiet
        self.hushed = False  # -q given: not even the one-line notes on stderr

    def open(self):
        from .embed import load as load_embedder
        from .store import Library

        lib = Library(self.library_dir, self.embed_model)
        return lib, load_embedder(EmbedOptions(model=lib.embed_model))


def filter_options(f):
    """The filters shared by search and ask."""
    f = click.option("--file", "file_name", default=None, help="Only recordings whose name matches this glob.")(f)
    f = click.option("--language", default=None, help="Only speech in this language (e.g. de).")(f)
    f = click.option("--since", default=None, help="Only recordings made on/after this date (YYYY-MM-DD).")(f)
    f = click.option("--until", default=None, help="Only recordings made on/before this date (YYYY-MM-DD).")(f)
    f = click.option("--speaker", default=None, help="Only passages where this speaker talks.")(f)
    f = click.option("--rerank", type=click.Choice(["none", "llm", "cross-encoder"]), default=None,
                     help="Reorder the candidates with the LLM or a cross-encoder (env EARMARK_RERANK).")(f)
    return f


# Filters a server's search and ask do not take: a command given one answers itself.
LOCAL_FILTERS = ("language", "since", "until", "speaker", "rerank")


def local_option(f):
    return click.option("--local", is_flag=True, envvar="EARMARK_LOCAL",
                        help="Answer in this command even when `earmark serve` runs for the library (env "
                             "EARMARK_LOCAL=1); without it, a running server answers, with its models loaded.")(f)


def _server(obj: Ctx, local: bool, **here) -> tuple[str, str | None] | None:
    """A running `earmark serve` of this library to send the command to (remote.py), unless --local or
    anything in ``here`` (a filter, an option) is set that only this command can apply."""
    if local or any(here.values()):
        return None
    from .remote import find

    server = find(obj.library_dir)
    if server and not obj.hushed:
        click.echo(f"(answered by earmark serve at {server[0]}; --local answers here)", err=True)
    return server


def _scope(**filters) -> dict:
    scope = {"file": filters["file_name"], "language": filters["language"], "since": filters["since"],
             "until": filters["until"], "speaker": filters["speaker"]}
    return scope | ({"rerank": filters["rerank"]} if filters.get("rerank") else {})


def _emit_json(data: dict) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


def _logging(verbose: int) -> None:
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    elif verbose:  # a -v given after the command name, once logging is set up
        logging.getLogger().setLevel(level)


def _shared(ctx: click.Context, param: click.Parameter, value) -> None:
    """A shared option given after the command name (`earmark ingest --library X`) overrides the group's."""
    obj = ctx.find_object(Ctx)
    if obj is None or value in (None, False, 0):
        return
    if param.name == "library":
        obj.library_dir = value
    elif param.name == "embed_model":
        obj.embed_model = value
    elif param.name == "quiet":
        obj.quiet = obj.hushed = True
    elif param.name == "verbose":
        _logging(value)


def _shared_options() -> list[click.Option]:
    return [click.Option(["--library"], type=click.Path(path_type=Path), expose_value=False, callback=_shared,
                         help="Library directory (as before the command)."),
            click.Option(["--embed-model"], expose_value=False, callback=_shared,
                         help="Search embedding model (as before the command)."),
            click.Option(["-q", "--quiet"], is_flag=True, expose_value=False, callback=_shared, help="No progress output."),
            click.Option(["-v", "--verbose"], count=True, expose_value=False, callback=_shared,
                         help="More logging (-vv for debug).")]


class _Group(click.Group):
    """A group whose shared options (library, embedder, quiet, verbose) are taken after any command
    name as well as before it, as git's -C and most click tools' shared options are; a command
    that has an option of the same name (eval's and serve's --library) keeps its own."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        _add_shared(cmd)
        super().add_command(cmd, name)


def _add_shared(cmd: click.Command) -> None:
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            _add_shared(sub)
        return
    taken = {opt for p in cmd.params for opt in p.opts}
    cmd.params += [o for o in _shared_options() if not taken & set(o.opts)]


@click.group(cls=_Group)
@click.option("--library", type=click.Path(path_type=Path), default=None,
              help="Library directory (env EARMARK_LIBRARY; default: a per-user data dir).")
@click.option("--embed-model", envvar="EARMARK_EMBED_MODEL", default=None,
              help=f"Search embedding model (env EARMARK_EMBED_MODEL). Default: the one the library was built "
                   f"with; for a new library {EmbedOptions().model}.")
@click.option("--chroma-url", default=None, help="Keep passage vectors on this Chroma server, http://HOST:PORT "
              "(env EARMARK_CHROMA_URL; default: embedded in the library).")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.version_option(package_name="earmark")
@click.pass_context
def cli(ctx: click.Context, library: Path | None, embed_model: str | None, chroma_url: str | None, quiet: bool,
        verbose: int) -> None:
    """Ask questions of your recordings and get answers that cite the exact second."""
    if chroma_url is not None:  # the edge sets it for every library this process opens (server workers too)
        os.environ["EARMARK_CHROMA_URL"] = chroma_url
    _logging(verbose)
    log = logging.getLogger(__name__)
    if log.isEnabledFor(logging.DEBUG):  # reading /proc/self/maps is no work for every command
        log.debug("memory allocator: %s", allocator.describe())
    ctx.obj = Ctx(library or default_library(), embed_model, quiet or not sys.stderr.isatty())
    ctx.obj.hushed = quiet


def ingest_options(f):
    """The options of how files are ingested, shared by `ingest` and `watch`."""
    for option in reversed([
        click.option("--whisper-model", default=TranscribeOptions().model, show_default=True,
                     help="Whisper model name (env EARMARK_WHISPER_MODEL)."),
        click.option("--language", default=None, help="Force one language (e.g. en); default: detect per speech region."),
        click.option("--beam-size", type=click.IntRange(min=1), default=None,
                     help="Beam search width for all speech (env EARMARK_BEAM_SIZE); default: greedy for English, "
                          "EARMARK_FOREIGN_BEAM_SIZE (5) for other languages. 1: greedy throughout."),
        click.option("--num-speakers", type=click.IntRange(min=1), default=None,
                     help="Without a turns file, split the voices into exactly N speakers (default: found by voice)."),
        click.option("--min-speakers", type=click.IntRange(min=1), default=1, show_default=True,
                     help="At least this many speakers when finding them by voice."),
        click.option("--max-speakers", type=click.IntRange(min=1), default=None, help="At most this many speakers."),
        click.option("--no-diarize", is_flag=True, help="Do not find speakers by voice (env EARMARK_DIARIZE=0)."),
        click.option("--jobs", type=click.IntRange(min=1), default=None,
                     help="Files transcribed at once, one process each (env EARMARK_INGEST_JOBS; default: one per "
                          "core when a folder has several files to transcribe, else 1)."),
        click.option("--ray", "ray_address", default=None, metavar="auto|ADDRESS",
                     help="Transcribe on a Ray cluster (env EARMARK_RAY): `auto` joins the one this machine is in. "
                          "This process stays the library's only writer; every node needs earmark and the files."),
    ]):
        f = option(f)
    return f


def _ingest_options(whisper_model: str, language: str | None, beam_size: int | None, num_speakers: int | None,
                    min_speakers: int, max_speakers: int | None, no_diarize: bool, jobs: int | None,
                    ray_address: str | None = None, speakers: Path | None = None):
    from .diarize import DiarizeOptions
    from .ingest import IngestOptions

    diarization = DiarizeOptions(num_speakers=num_speakers, min_speakers=min_speakers, max_speakers=max_speakers)
    diarization.check()  # impossible bounds fail before anything is opened
    return IngestOptions(transcribe=replace(TranscribeOptions(), model=whisper_model, language=language,
                                            beam_size=beam_size or TranscribeOptions().beam_size),
                         speakers=speakers,
                         diarize=IngestOptions().diarize and not no_diarize, diarization=diarization,
                         jobs=jobs or IngestOptions().jobs, ray=ray_address or IngestOptions().ray)


def _file_line(r) -> None:
    """One line per file, whatever its name holds: newlines and control characters are escaped."""
    from .audio import one_line, shown

    mark = {"ingested": "ok", "skipped": "skip", "failed": "FAIL"}[r.status]
    click.echo(f"{mark:4}  {shown(r.path)}  {one_line(r.message)}", err=r.status == "failed")


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--speakers", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Speaker turns (RTTM or STM) of the one recording ingested. Without it, NAME.stm or "
                   "NAME.rttm beside NAME.wav is used.")
@click.option("--summarize", is_flag=True, help="Also make each file's cited summary and chapters (`earmark summary`).")
@ingest_options
@click.pass_obj
def ingest(obj: Ctx, paths: tuple[Path, ...], speakers: Path | None, summarize: bool, **how) -> None:
    """Transcribe and index files and folders (recursively). Already-ingested content is skipped."""
    from rich.progress import Progress

    from .ingest import discover
    from .ingest import ingest as run_ingest

    options = _ingest_options(**how, speakers=speakers)
    lib, embedder = obj.open()
    files = discover(paths)
    with Progress(disable=obj.quiet, transient=True) as progress:
        task = progress.add_task("ingesting", total=len(files))

        def on_file(r):
            progress.advance(task)
            _file_line(r)

        report = run_ingest(lib, embedder, files, options, on_file=on_file)
    click.echo(f"{report.count('ingested')} ingested, {report.count('skipped')} skipped, "
               f"{len(report.failed)} failed")
    if summarize:
        from .cli_summary import make

        make(lib, embedder, [r.sha256 for r in report.results if r.status != "failed" and r.sha256])
    if report.failed:
        sys.exit(1)


@cli.command()
@click.argument("folders", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--settle", type=click.FloatRange(min=0), default=None,
              help="Seconds a file must stop growing before it is ingested (default 2).")
@ingest_options
@click.pass_obj
def watch(obj: Ctx, folders: tuple[Path, ...], settle: float | None, **how) -> None:
    """Keep folders in the library: ingest new and changed files as they appear, follow renames, retire
    recordings whose file vanished (all in the audit log). Catches up on start; Ctrl-C stops."""
    import signal
    import threading

    from . import watch as watching

    options = _ingest_options(**how)
    lib, embedder = obj.open()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def on_change(c):
        from .audio import one_line

        click.echo(f"{c.action:4}  {one_line(c.file)}  {one_line(c.path)} -> {one_line(c.detail)}")

    watching.watch(list(folders), lambda fn: fn(lib, embedder), stop, options,
                   settle=watching.SETTLE_SECONDS if settle is None else settle, on_file=_file_line,
                   on_change=on_change, ignore=lib.root,
                   on_ready=lambda: click.echo(f"watching {', '.join(map(str, folders))} (Ctrl-C stops)", err=True))


@cli.command()
@click.argument("query")
@click.option("-k", "--top", "k", default=10, show_default=True, help="Number of hits.")
@click.option("--mode", type=click.Choice(["hybrid", "dense", "lexical"]), default="hybrid", show_default=True,
              help="Meaning (dense), words (lexical, BM25) or both fused.")
@click.option("--exact", is_flag=True, help="Every occurrence of QUERY as a phrase, timed by its words.")
@filter_options
@click.option("--json", "as_json", is_flag=True, help='Print {"hits": [{"file","start","end","text","score"}]}.')
@local_option
@click.pass_obj
def search(obj: Ctx, query: str, k: int, mode: str, exact: bool, as_json: bool, local: bool, **filters) -> None:
    """Find the passages that best match QUERY (or, with --exact, every occurrence of it)."""
    server = _server(obj, local, **{f: filters[f] for f in LOCAL_FILTERS})
    if server:
        from . import remote

        hits = remote.search(server, query, k, mode, exact, filters["file_name"])
    else:
        from .search import SearchOptions
        from .search import exact as run_exact
        from .search import search as run_search

        lib, embedder = obj.open()
        options = SearchOptions(k=k, mode=mode, **_scope(**filters))
        hits = [h.to_json() for h in (run_exact(lib, query, options) if exact else
                                      run_search(lib, embedder, query, options))]
    if as_json:
        return _emit_json({"hits": hits})
    if not hits and not server:
        indexed = sum(r.status == "indexed" for r in lib.recordings())
        click.echo("nothing is indexed yet: `earmark ingest PATH` first" if not indexed else
                   f"no occurrence of {query!r} in {indexed} recording(s) (case and punctuation ignored)"
                   if exact else f"no hits in {indexed} recording(s)")
    elif not hits:
        click.echo("no hits")
    for h in hits:
        click.echo(f"{h['score']:.3f}  {h['file']} @ {span(h['start'], h['end'])}  {h['text'][:160]}")


@cli.command()
@click.argument("question")
@click.option("--llm", default=AnswerOptions().llm, show_default=True,
              help="Answering backend: llama-cpp, openai or ollama (env EARMARK_LLM).")
@click.option("--llm-model", default=AnswerOptions().model, help="Model for the backend (env EARMARK_LLM_MODEL).")
@filter_options
@click.option("--json", "as_json", is_flag=True,
              help='Print {"question","answer","found","citations":[{"n","file","start","end","text"}]}.')
@click.option("--clips", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write a WAV clip + manifest of each cited span into this folder.")
@local_option
@click.pass_obj
def ask(obj: Ctx, question: str, llm: str, llm_model: str, as_json: bool, clips: Path | None, local: bool,
        **filters) -> None:
    """Answer QUESTION from the recordings, citing file @ mm:ss–mm:ss."""
    stream = None if as_json else _AnswerPrinter()
    # A server answers with its own model: one named here, or clips cut here, are answered here.
    own_model = (llm, llm_model) != (AnswerOptions().llm, AnswerOptions().model)
    server = _server(obj, local, clips=clips, model=own_model, **{f: filters[f] for f in LOCAL_FILTERS})
    if server:
        from . import remote

        answer = remote.ask(server, question, "hybrid", filters["file_name"],
                            on_text=stream.show if stream else None)
    else:
        from .answer import ask as run_ask
        from .search import SearchOptions

        lib, embedder = obj.open()
        found = run_ask(lib, embedder, question, replace(AnswerOptions(), llm=llm, model=llm_model),
                        SearchOptions(**_scope(**filters)), on_token=stream.feed if stream else None)
        if clips:
            from .clips import clip_citations

            for p in clip_citations(lib, found, clips):
                click.echo(f"clip: {p} (+ .json manifest)", err=True)
        answer = found.to_json()
    if as_json:
        return _emit_json(answer)
    stream.finish(answer["answer"])
    for c in answer["citations"]:
        click.echo(f"  [{c['n']}] {c['file']} @ {span(c['start'], c['end'])}  \"{c['text']}\"")


class _AnswerPrinter:
    """Prints the model's answer as it is generated, then settles it against the verified answer."""

    def __init__(self):
        from .llm import FieldStream

        self.field, self.shown = FieldStream("answer"), ""

    def feed(self, token: str) -> None:
        """A piece of the model's JSON reply, as it is generated."""
        self.show(self.field.feed(token))

    def show(self, text: str) -> None:
        """A piece of the answer's text (a server has taken it out of the JSON already)."""
        if text:
            click.echo(text, nl=False)
            self.shown += text

    def finish(self, checked: str) -> None:
        if self.shown.strip() == checked.strip():
            click.echo()
            return
        if self.shown:
            click.echo("\n(withdrawn: the recordings do not bear this out)")
        click.echo(checked)


@cli.command()
@click.argument("file")
@click.option("--json", "as_json", is_flag=True, help="Print the whole transcript with segment and word times.")
@click.pass_obj
def transcript(obj: Ctx, file: str, as_json: bool) -> None:
    """Print a recording's transcript as timestamped lines (FILE: name as ingested, path or hash)."""
    from .store import Library

    lib = Library(obj.library_dir, obj.embed_model)
    t = lib.transcript(lib.find(file).sha256)
    if as_json:
        return _emit_json(t.to_dict())
    for s in t.segments:
        flag = f"  [{s.flag}: not indexed]" if s.flag else ""
        who = f"{s.speaker}: " if s.speaker else ""
        click.echo(f"[{span(s.start, s.end)}] ({s.language}) {who}{s.text}{flag}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print files, hours, passages and models as JSON.")
@click.pass_obj
def status(obj: Ctx, as_json: bool) -> None:
    """What the library holds: recordings, hours of audio, passages, models."""
    from .store import Library

    lib = Library(obj.library_dir, obj.embed_model)
    recs = lib.recordings()
    data = {
        "library": str(lib.root), "files": len(recs),
        "hours": round(sum(r.duration or 0 for r in recs) / 3600, 4),
        "passages": sum(r.passages for r in recs), "embed_model": lib.embed_model,
        "whisper_models": sorted({r.transcribe_model.get("name", "?") for r in recs}),
        "recordings": [{"file": r.file_name, "sha256": r.sha256, "duration": r.duration, "status": r.status,
                        "languages": r.languages, "passages": r.passages, "recorded_at": r.recorded_at,
                        "recorded_from": r.recorded_from} for r in recs],
    }
    if as_json:
        return _emit_json(data)
    click.echo(f"{data['library']}: {_count(data['files'], 'recording')}, {data['hours'] * 60:.1f} min, "
               f"{_count(data['passages'], 'passage')}; embedder {data['embed_model']}, whisper {data['whisper_models']}")
    for r in recs:
        click.echo(f"  {r.status:11} {mmss(r.duration or 0):>8}  {','.join(r.languages):8} {r.file_name}")


@cli.command()
@click.pass_obj
def reindex(obj: Ctx) -> None:
    """Rebuild the passage index from the stored transcripts (e.g. after changing chunking), where
    EARMARK_CHROMA_URL (or --chroma-url) says: that moves a library to a Chroma server, or back."""
    from .config import ChunkOptions
    from .ingest import index_transcript

    lib, embedder = obj.open()
    failed = 0
    with lib.writing():  # one writer at a time (lock.py)
        if lib.index_elsewhere():  # e.g. EARMARK_CHROMA_URL newly set: the library moves there
            lib.move_index()
            click.echo(f"building the passage vectors in {lib.vector_store}", err=True)
        for r in lib.recordings():
            try:
                n = index_transcript(lib, embedder, lib.transcript(r.sha256), ChunkOptions())
            except EarmarkError as e:  # a damaged transcript: say which, and go on with the others
                failed += 1
                click.echo(f"FAIL  {r.file_name}: {e}", err=True)
                continue
            click.echo(f"{r.file_name}: {_count(n, 'passage')}")
    if failed:
        sys.exit(1)


@cli.command("eval")
@click.option("--audio", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of recordings to ingest (recursively).")
@click.option("--questions", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Question set, JSONL (see eval/sets/README.md).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where report.json, report.md and the plots go.")
@click.option("--library", "eval_library", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Library to ingest into (or reuse); default: a fresh OUT/library.")
@click.option("--set", "set_name", default=None, help="Name of the question set in the report (default: file stem).")
@click.option("--long-minutes", default="10,60,180", show_default=True,
              help="Stitched archive lengths in minutes, comma-separated; 0 skips them.")
@click.option("--no-baseline", is_flag=True, help="Skip the openai-whisper transcribe speed/WER baseline.")
@click.pass_obj
def eval_(obj: Ctx, audio: Path, questions: Path, out: Path, eval_library: Path | None, set_name: str | None,
          long_minutes: str, no_baseline: bool) -> None:
    """Measure retrieval, answers, transcription, timestamps and speed on AUDIO with QUESTIONS."""
    from earmark_eval.report import headline
    from earmark_eval.run import EvalInputError, run_eval

    try:
        minutes = tuple(m for m in (float(x) for x in long_minutes.split(",") if x.strip()) if m > 0)
    except ValueError:
        raise click.BadParameter(f"{long_minutes!r} is not a comma-separated list of minutes",
                                 param_hint="--long-minutes") from None
    say = (lambda msg: None) if obj.quiet else (lambda msg: click.echo(msg, err=True))
    try:
        report = run_eval(audio, questions, out, library_dir=eval_library, set_name=set_name,
                          long_minutes=minutes, baseline=not no_baseline, embed_model=obj.embed_model,
                          progress=say)
    except EvalInputError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"report: {out / 'report.md'} (and report.json, plots) in {report['wall_seconds'] / 60:.1f} min")
    for name, value in headline(report):
        click.echo(f"  {name}: {value}")


@cli.command()
@click.option("--library", "serve_library", type=click.Path(path_type=Path), default=None,
              help="Library directory (as the global --library).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback needs --token.")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--token", envvar="EARMARK_TOKEN", default=None,
              help="Require 'Authorization: Bearer TOKEN' on every /api request (env EARMARK_TOKEN; "
                   "prefer the variable: a flag shows in the process list).")
@click.option("--allowed-host", "allowed_hosts", multiple=True,
              help="A host name the server answers to besides loopback and --host (repeatable; env "
                   "EARMARK_ALLOWED_HOSTS, space-separated), e.g. behind a reverse proxy.")
@click.option("--ingest-root", "ingest_roots", multiple=True, type=click.Path(exists=True, file_okay=False,
              path_type=Path), help="A folder POST /api/ingest {\"path\"} may read (repeatable; env "
                                    "EARMARK_INGEST_ROOTS, separated by ':'). Default: uploads only.")
@click.option("--watch", "watch_folders", multiple=True, type=click.Path(exists=True, file_okay=False,
              path_type=Path), help="A folder kept in the library as `earmark watch` keeps it (repeatable).")
@click.pass_obj
def serve(obj: Ctx, serve_library: Path | None, host: str, port: int, token: str | None,
          allowed_hosts: tuple[str, ...], ingest_roots: tuple[Path, ...], watch_folders: tuple[Path, ...]) -> None:
    """Serve the web page and JSON API (OpenAPI at /docs) over the library."""
    from .config import ServeOptions
    from .web import serve as run_server

    allowed_hosts = allowed_hosts or tuple(os.environ.get("EARMARK_ALLOWED_HOSTS", "").split())
    ingest_roots = ingest_roots or tuple(Path(p) for p in os.environ.get("EARMARK_INGEST_ROOTS", "").split(os.pathsep)
                                         if p)
    options = replace(ServeOptions(), host=host, port=port, token=token or None, allowed_hosts=allowed_hosts,
                      ingest_roots=ingest_roots, watch=watch_folders)
    run_server(serve_library or obj.library_dir, obj.embed_model, options)


register_evidence(cli)  # verify, audit, delete, export, clip, redact, speakers (cli_evidence.py)
register_summary(cli)  # summary (cli_summary.py)


def main() -> None:
    """Run the CLI, turning earmark's errors into one line and exit code 2."""
    try:
        cli(standalone_mode=False, prog_name="earmark")
    except EarmarkError as e:
        click.echo(f"earmark: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)


def entry() -> None:
    """The `earmark` command: `main` in a process that runs with tcmalloc (allocator.py says why).
    Only the command re-executes itself; `main` called in-process (tests, other tools) never does."""
    allocator.reexec(sys.argv[1:])
    main()


def _count(n: int, noun: str) -> str:
    """ "1 passage", "2 passages"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
