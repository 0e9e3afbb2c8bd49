"""Bad input (issue 22 part 3): over a hundred kinds of broken, odd and hostile input, generated here.

Nothing is committed as a binary: every kind is made (module ``inputs``) by ffmpeg, sox, espeak-ng
or a few lines of Python into the part's folder, then the real ``earmark`` command ingests them (a
subprocess, like a user) into a library that already holds two real recordings. Most kinds sit in one folder and are
ingested in one run; the rest need a run of their own (a read-only library, a disk that fills up, a
corrupted catalog row, a hand-edited transcript, a file that grows or is replaced while it is read,
names given directly, eight hours of silence whose memory is measured).

Per kind it checks: exactly one line naming the file (its name escaped) with status ok/skip/FAIL, and
a FAIL line says what to do; the batch goes on; nothing already in the library is lost; the exit code
is the documented one (0 all ok, 1 some file failed, 2 usage or library error); no Python traceback;
on silence, noise and music at most one indexed word per minute.

The command runs without the capabilities that let root ignore file permissions (``setpriv``), so an
unreadable file and a read-only library are what they are for any user.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import threading
import sys
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from earmark_eval.reliability.inputs import BASE, Kind, Sources, ff, folder_kinds, make_kinds
from earmark_eval.reliability.part import Context, Goal, Part, command

# A FAIL line must say what to do: one of these words (or that there is nothing to do).
ACTION = re.compile(r"\b(check|convert|ingest|fix|remove|point|chmod|free|re-?copy|use|run|try|delete|"
                    r"restore|make|name|give|nothing to transcribe)\b", re.I)
TRACEBACK = "Traceback (most recent call last)"
STATUSES = ("ok", "skip", "FAIL")
QUIET_WORDS_PER_MIN = 1.0


@dataclass
class Outcome:
    kind: str
    expected: str
    line: str
    met: bool
    note: str = ""


@dataclass
class Run:
    """One `earmark` invocation: its exit code, output, and the peak memory of its processes."""

    args: list[str]
    rc: int
    out: str
    err: str
    seconds: float
    peak_rss: int = 0

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines() + self.err.splitlines()

    @property
    def traceback(self) -> bool:
        return TRACEBACK in self.err or TRACEBACK in self.out


# --- running earmark ---------------------------------------------------------------------------------

def _unprivileged() -> list[str]:
    """A prefix that runs a command as root without the capabilities that bypass file permissions."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return []
    return ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", "--"]


# Runs a command and writes the peak RSS (KiB) of its process tree, as the kernel counted it
# (getrusage of the waited-for children), to the file in argv[1]: sampling misses a short run's peak.
RUSAGE = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[2:]).returncode; "
          "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); sys.exit(code)")


def earmark(ctx: Context, *args, cwd: Path | None = None, timeout: float = 3600,
            during: Callable[[], None] | None = None) -> Run:
    """Run the real command (never the pipeline in-process), measuring its processes' peak RSS."""
    import tempfile

    import psutil

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("EARMARK_LIBRARY", None)
    rusage = Path(tempfile.mkstemp(prefix="earmark-rusage-")[1])
    argv = [sys.executable, "-c", RUSAGE, str(rusage), *_unprivileged(), *ctx.earmark, *map(str, args)]
    t = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=env)
    peak, box = 0, {}
    reader = threading.Thread(target=lambda: box.update(zip(("out", "err"), proc.communicate())))
    reader.start()
    if during is not None:
        threading.Thread(target=during, daemon=True).start()
    while reader.is_alive() and time.monotonic() - t < timeout:
        try:
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        reader.join(0.5)
    if reader.is_alive():
        proc.kill()
        reader.join()
    try:
        peak = max(peak, int(rusage.read_text() or 0) * 1024)
    except ValueError:
        pass
    rusage.unlink(missing_ok=True)
    return Run([str(a) for a in args], proc.returncode, box.get("out", b"").decode(errors="replace"),
               box.get("err", b"").decode(errors="replace"), time.monotonic() - t, peak)


def shown(name: str) -> str:
    """A file name as the ingest line must print it: control characters, line separators and bytes
    that are not UTF-8 escaped, everything else as it is (the contract, written here independently)."""
    out = []
    for c in name:
        if 0xDC80 <= ord(c) <= 0xDCFF:
            out.append(f"\\x{ord(c) - 0xDC00:02x}")
        elif unicodedata.category(c).startswith(("C", "Zl", "Zp")):
            out.append(c.encode("unicode_escape").decode("ascii"))
        else:
            out.append(c)
    return "".join(out)


def lines_for(run: Run, name: str) -> list[str]:
    """The per-file lines of a run that name this file."""
    want = shown(name)
    found = []
    for line in run.lines:
        m = re.match(r"^(ok|skip|FAIL) +(.*)$", line)
        if m and (m.group(2) == want or m.group(2).startswith(want + "  ")):
            found.append(line)
    return found


# --- judging the folder run ----------------------------------------------------------------------

def judge(kind: Kind, run: Run) -> Outcome:
    """Whether the one run said the right thing of this kind."""
    found = lines_for(run, kind.name)
    expected = "no line (not a recording)" if not kind.allowed else "/".join(kind.allowed)
    expected += f", says /{kind.says}/" if kind.says else ""
    expected += ", warns it is truncated if ok" if kind.stated else ""
    name = shown(kind.name)  # the report is UTF-8: a name's undecodable bytes go in escaped
    if not kind.allowed:
        return Outcome(name, expected, "(none)", not found, "; ".join(found))
    if len(found) != 1:
        return Outcome(name, expected, " | ".join(found) or "(none)", False, f"{len(found)} lines")
    line = found[0]
    status = line.split()[0]
    problems = []
    if status not in kind.allowed:
        problems.append(f"status {status}")
    if kind.says and not re.search(kind.says, line):
        problems.append("does not say what is wrong")
    if status == "FAIL" and not ACTION.search(line.split("  ", 2)[-1]):
        problems.append("does not say what to do")
    if kind.stated and status == "ok" and "truncated" not in line:
        problems.append("no truncation warning")
    return Outcome(name, expected, line, not problems, ", ".join(problems))


def words_per_minute(ctx: Context, library: Path, name: str) -> float | None:
    """Indexed (unflagged) words a minute in a recording's transcript, or None if it has none."""
    run = earmark(ctx, "--library", library, "transcript", name, "--json")
    if run.rc != 0:
        return None
    t = json.loads(run.out)
    words = sum(len(s["text"].split()) for s in t["segments"] if not s.get("flag"))
    return words / max(t["duration"] / 60, 1 / 60)


def snapshot(ctx: Context, library: Path) -> dict[str, str]:
    """What the library holds of the base recordings: file name -> its transcript's text."""
    held = {}
    for name in BASE:
        run = earmark(ctx, "--library", library, "transcript", name, "--json")
        if run.rc == 0:
            held[name] = " ".join(s["text"] for s in json.loads(run.out)["segments"])
    return held


def lost(ctx: Context, library: Path, before: dict[str, str]) -> list[str]:
    """Base recordings whose transcript went missing or changed, or that search no longer finds."""
    after = snapshot(ctx, library)
    gone = [n for n in before if after.get(n) != before[n]]
    for name, text in before.items():
        probe = " ".join(text.split()[:8])
        run = earmark(ctx, "--library", library, "search", probe, "--json", "-k", "20")
        if run.rc != 0 or name not in {h["file"] for h in json.loads(run.out or "{}").get("hits", [])}:
            gone.append(f"{name} (not found by search)")
    return sorted(set(gone))


# --- the kinds that need a run of their own ------------------------------------------------------

@dataclass
class Own:
    """A kind that needs its own set-up and invocation; `check` returns an Outcome."""

    name: str
    check: Callable[["World"], Outcome]
    quick: bool = False
    long: bool = False


@dataclass
class World:
    ctx: Context
    library: Path  # the base library (two real recordings, then the batch)
    sources: Sources
    work: Path
    runs: list[Run] = field(default_factory=list)
    figures: dict = field(default_factory=dict)

    def earmark(self, *args, **kw) -> Run:
        run = earmark(self.ctx, *args, **kw)
        self.runs.append(run)
        return run

    def fresh(self, name: str) -> Path:
        """A copy of the base library to damage."""
        copy = self.work / name
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(self.library, copy, symlinks=True)
        return copy


def _one_line_error(run: Run, rc: tuple[int, ...], says: str = "") -> list[str]:
    """What is wrong with a run that should end in `rc` with a one-line `earmark:`/FAIL error."""
    problems = [] if run.rc in rc else [f"exit {run.rc}"]
    if run.traceback:
        problems.append("traceback")
    errors = [ln for ln in run.err.splitlines() if ln.strip() and not ln.startswith(("WARNING", "INFO"))]
    if run.rc != 0 and not errors:
        problems.append("no error line")
    if says and not re.search(says, run.err + run.out, re.I):
        problems.append(f"does not say /{says}/")
    return problems


def _show(run: Run) -> str:
    """The lines a run printed that matter, for the report (the summary and errors)."""
    keep = [ln for ln in run.lines if ln.strip() and not ln.startswith("Traceback") and not ln.startswith("  ")]
    return " ⏎ ".join(keep[-3:])[:300] + (" [+traceback]" if run.traceback else "")


def own_dash(w: World) -> Outcome:
    """A name with a leading dash given directly: `ingest -- -x.wav` works, without `--` a usage error."""
    folder = w.work / "dash"
    folder.mkdir(exist_ok=True)
    shutil.copyfile(w.sources.spoken(), folder / "-direct.wav")
    bare = w.earmark("--library", w.library, "ingest", "-direct.wav", cwd=folder)
    dashed = w.earmark("--library", w.library, "ingest", "--", "-direct.wav", cwd=folder)
    problems = _one_line_error(bare, (2,), "no such option")
    problems += [] if dashed.rc == 0 and len(lines_for(dashed, "-direct.wav")) == 1 else [f"with --: exit {dashed.rc}"]
    return Outcome("-direct.wav named directly (with and without --)", "exit 2 without --, ok with --",
                   f"{_show(bare)} // {_show(dashed)}", not problems, ", ".join(problems))


def own_missing(w: World) -> Outcome:
    run = w.earmark("--library", w.library, "ingest", w.work / "no-such-dir" / "missing.wav")
    problems = _one_line_error(run, (1,), "no such file")
    return Outcome("a path that does not exist", "FAIL, exit 1", _show(run), not problems, ", ".join(problems))


def own_readonly(w: World) -> Outcome:
    """A read-only library: ingest refuses in one line, and so does search (SQLite's WAL must write its
    shared-memory file even to read), naming it read-only and what to do."""
    lib = w.fresh("library-readonly")
    for p in [lib, *lib.rglob("*")]:
        p.chmod(p.stat().st_mode & ~0o222)
    new = w.sources.spoken()
    ingest = w.earmark("--library", lib, "ingest", new)
    search = w.earmark("--library", lib, "search", "the", "--json")
    problems = _one_line_error(ingest, (1, 2), "read-only|readonly|permission|cannot write")
    problems += [f"search: {p}" for p in (_one_line_error(search, (0,)) if search.rc == 0 else
                                          _one_line_error(search, (2,), "read-only"))]
    for p in [lib, *lib.rglob("*")]:
        p.chmod(p.stat().st_mode | 0o200)
    return Outcome("read-only library (ingest, then search)", "ingest: one-line error, exit 2; search: works or one-line error",
                   f"{_show(ingest)} // search exit {search.rc}", not problems, ", ".join(problems))


def own_disk_full(w: World) -> Outcome:
    """A library on a 20 MB tmpfs that fills up mid-ingest: one line per file, nothing lost, resumes."""
    mnt = w.work / "tmpfs"
    mnt.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mnt)], capture_output=True)
    if mounted.returncode != 0:
        return Outcome("disk fills up mid-ingest", "one line per file, nothing lost", "(not run)", False,
                       f"could not mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        lib = mnt / "library"
        first = w.earmark("--library", lib, "ingest", w.sources.real / BASE[0])
        before = snapshot(w.ctx, lib)
        filler = mnt / "filler"
        free = shutil.disk_usage(mnt).free
        with open(filler, "wb") as f:  # leave about 150 kB: a transcript or two, not an index
            f.write(b"\0" * max(0, free - 150_000))
        batch = w.work / "disk-full-batch"
        batch.mkdir(exist_ok=True)
        for i in range(3):
            shutil.copyfile(w.sources.spoken(), batch / f"more-{i}.wav")
        full = w.earmark("--library", lib, "ingest", batch)
        filler.unlink()
        gone = [n for n in before if snapshot(w.ctx, lib).get(n) != before[n]]
        again = w.earmark("--library", lib, "ingest", batch)
        verify = w.earmark("--library", lib, "verify")
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    problems = [] if first.rc == 0 else [f"first ingest exit {first.rc}"]
    problems += _one_line_error(full, (1, 2), "space|full")
    problems += [f"{len(lines_for(full, f'more-{i}.wav'))} lines for more-{i}.wav" for i in range(3)
                 if full.rc == 1 and len(lines_for(full, f"more-{i}.wav")) != 1]
    problems += [f"lost {n}" for n in gone] + ([] if again.rc == 0 else [f"rerun after freeing space: exit {again.rc}"])
    problems += [] if verify.rc == 0 else [f"verify exit {verify.rc}"]
    return Outcome("disk fills up mid-ingest (20 MB tmpfs), then space is freed",
                   "one line per file naming the disk, nothing lost, rerun ingests the rest",
                   f"{_show(full)} // rerun exit {again.rc}", not problems, ", ".join(problems))


def _sha_of(library: Path, name: str) -> str:
    with sqlite3.connect(library / "catalog.sqlite") as db:
        return db.execute("SELECT sha256 FROM recordings WHERE file_name=?", (name,)).fetchone()[0]


def own_corrupt_row(w: World) -> Outcome:
    """A catalog row damaged by hand: status, search and ingest answer in one line, or work."""
    lib = w.fresh("library-corrupt-row")
    with sqlite3.connect(lib / "catalog.sqlite") as db:
        db.execute("UPDATE recordings SET languages='[\"en', transcribe_model='{oops', duration='long' "
                   "WHERE file_name=?", (BASE[0],))
    runs = [w.earmark("--library", lib, "status"), w.earmark("--library", lib, "search", "the", "--json"),
            w.earmark("--library", lib, "ingest", w.sources.real / BASE[0])]
    problems = []
    for run in runs:
        problems += [f"{run.args[2]}: {p}" for p in _one_line_error(run, (0, 1, 2))]
    other = snapshot(w.ctx, lib).get(BASE[1])
    problems += [] if other else [f"{BASE[1]} (undamaged) unreadable"]
    return Outcome("corrupted catalog row (bad JSON in languages/model, text in duration)",
                   "status/search/ingest: work, or a one-line error naming the row; others unharmed",
                   " // ".join(f"{r.args[2]} exit {r.rc}: {_show(r)}" for r in runs), not problems, ", ".join(problems))


def own_edited_transcript(w: World) -> Outcome:
    """A transcript JSON edited by hand: a valid edit is honoured by reindex; a broken one is one line."""
    lib = w.fresh("library-edited")
    path = lib / "transcripts" / f"{_sha_of(lib, BASE[0])}.json"
    data = json.loads(path.read_text())
    data["segments"][0]["text"] = " Zanzibar quokkas " + data["segments"][0]["text"]
    path.write_text(json.dumps(data, indent=1))
    reindex = w.earmark("--library", lib, "reindex")
    search = w.earmark("--library", lib, "search", "Zanzibar quokkas", "--json", "-k", "3")
    hits = json.loads(search.out or "{}").get("hits", [])
    problems = [] if reindex.rc == 0 and hits and hits[0]["file"] == BASE[0] else ["valid edit not honoured"]
    path.write_text(path.read_text()[:200])  # an edit that broke the JSON
    shown_run = w.earmark("--library", lib, "transcript", BASE[0])
    reindex2 = w.earmark("--library", lib, "reindex")
    problems += [f"transcript: {p}" for p in _one_line_error(shown_run, (2,), re.escape(path.name[:12]))]
    problems += [f"reindex: {p}" for p in _one_line_error(reindex2, (0, 1, 2))]
    return Outcome("transcript JSON edited by hand (valid edit, then broken JSON)",
                   "reindex honours the edit; broken: one-line error naming it, exit 2",
                   f"{_show(shown_run)} // reindex exit {reindex2.rc}: {_show(reindex2)}", not problems,
                   ", ".join(problems))


def _changing(w: World, name: str, replace: bool) -> Outcome:
    """A file that grows (a recorder still writing) or is replaced while ingest reads it."""
    folder = w.work / f"changing-{name}"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.wav"
    a, b = w.sources.spoken(), w.sources.spoken()
    shutil.copyfile(a, path)
    stop = threading.Event()

    def change() -> None:
        n = 0
        while not stop.is_set():
            if replace:  # swap in another recording, atomically, over and over
                tmp = folder / ".swap"
                shutil.copyfile(b if n % 2 == 0 else a, tmp)
                os.replace(tmp, path)
            else:  # append a tenth of a second of tone, as a recorder would
                with open(path, "ab") as f:
                    f.write((np.sin(np.arange(1600) * 0.3) * 8000).astype("<i2").tobytes())
            n += 1
            stop.wait(0.2)

    run = w.earmark("--library", w.library, "ingest", path, during=change)
    stop.set()
    again = w.earmark("--library", w.library, "ingest", path)  # once it is still, it goes in
    problems = _one_line_error(run, (1,), "changed while it was read")
    problems += [] if again.rc == 0 else [f"once still: exit {again.rc}"]
    what = "replaced" if replace else "growing"
    return Outcome(f"a file {what} while it is read", "FAIL 'changed while it was read', exit 1; ok once still",
                   f"{_show(run)} // then exit {again.rc}", not problems, ", ".join(problems))


def own_silence_8h(w: World) -> Outcome:
    """Eight hours of silence (flac of digital zero, small on disk): ingested with flat memory."""
    folder = w.work / "long"
    folder.mkdir(exist_ok=True)
    # The reference is 59 s: the batch's 60 s of silence has the same bytes as a new minute would, so
    # that one was skipped as already ingested and its 60 MB measured no ingest at all (stop 27-30 runs).
    minute, hours = folder / "silence-59s.flac", folder / "silence-8h.flac"
    for path, seconds in ((minute, 59), (hours, 8 * 3600)):
        if not path.exists():
            ff("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", seconds, "-c:a", "flac", path)
    short = w.earmark("--library", w.library, "ingest", "--no-diarize", minute)
    long = w.earmark("--library", w.library, "ingest", "--no-diarize", hours)
    wpm = words_per_minute(w.ctx, w.library, hours.name)
    w.figures["rss"] = {"8h": long.peak_rss, "1min": short.peak_rss, "8h_seconds": round(long.seconds)}
    w.figures.setdefault("quiet", {})[hours.name] = wpm
    flat = long.peak_rss <= 1.5 * short.peak_rss + 200e6
    problems = _one_line_error(long, (0,)) + ([] if flat else ["memory grew"])
    problems += [] if "1 ingested" in "\n".join(short.lines) else ["the 59 s reference was not ingested"]
    problems += [] if wpm is not None and wpm <= QUIET_WORDS_PER_MIN else [f"{wpm} words/min"]
    return Outcome(f"8 h of silence ({hours.stat().st_size // 1024} kB flac)",
                   "ok, ≤ 1 word/min, peak RSS flat (≤ 1.5× a 1-minute file's + 200 MB)",
                   f"{_show(long)} (peak RSS {long.peak_rss / 1e6:.0f} MB, 59 s: {short.peak_rss / 1e6:.0f} MB)",
                   not problems, ", ".join(problems))


OWN = [Own("leading dash given directly", own_dash, quick=True), Own("missing path", own_missing),
       Own("read-only library", own_readonly), Own("disk full", own_disk_full),
       Own("corrupted catalog row", own_corrupt_row), Own("hand-edited transcript", own_edited_transcript),
       Own("growing", lambda w: _changing(w, "growing", replace=False), quick=True),
       Own("replaced", lambda w: _changing(w, "replaced", replace=True)),
       Own("8 h silence", own_silence_8h, long=True)]


# --- the part ------------------------------------------------------------------------------------

def run(ctx: Context) -> Part:
    """Generate the kinds, ingest them, and check every outcome (see the module docstring)."""
    work = ctx.out
    for p in work.glob("*"):  # a rerun starts clean (a chmod 0 file and links included)
        _remove(p)
    sources = Sources(work / "sources", ctx.audio)
    library = work / "library"
    w = World(ctx, library, sources, work)
    seed = w.earmark("--library", library, "ingest", *(ctx.audio / n for n in BASE))
    before = snapshot(ctx, library)
    kinds = [k for k in folder_kinds() if k.quick or not ctx.quick]
    ctx.progress(f"badinput: making {len(kinds)} kinds")
    unmade = make_kinds(kinds, work / "batch", sources)
    ctx.progress("badinput: ingesting the folder")
    batch = w.earmark("--library", library, "ingest", work / "batch")
    outcomes = [judge(k, batch) for k in kinds]
    quiet = {k.name: words_per_minute(ctx, library, k.name) for k in kinds
             if k.quiet and lines_for(batch, k.name) and lines_for(batch, k.name)[0].startswith("ok")}
    verify = w.earmark("--library", library, "verify")
    for k, o in zip(kinds, outcomes):
        if k.name in quiet and (quiet[k.name] is None or quiet[k.name] > QUIET_WORDS_PER_MIN):
            o.met, o.note = False, f"{quiet[k.name]} indexed words/min"
    w.figures["quiet"] = quiet
    for own in OWN:
        if (ctx.quick and not own.quick) or (own.long and ctx.quick):
            continue
        ctx.progress(f"badinput: {own.name}")
        outcomes.append(own.check(w))
    gone = lost(ctx, library, before)
    return _part(ctx, w, outcomes, batch, seed, verify, gone, unmade)


def _remove(p: Path) -> None:
    if p.is_symlink() or p.is_file():
        p.unlink()
    elif p.is_dir():
        for q in p.rglob("*"):
            if not q.is_symlink():
                q.chmod(0o700 if q.is_dir() else 0o600)
        shutil.rmtree(p)


def _part(ctx: Context, w: World, outcomes: list[Outcome], batch: Run, seed: Run, verify: Run,
          gone: list[str], unmade: list[str]) -> Part:
    """The goals and the report section."""
    right = sum(o.met for o in outcomes)
    tracebacks = sum(r.traceback for r in w.runs)
    summary = re.search(r"(\d+) ingested, (\d+) skipped, (\d+) failed", batch.out)
    # Went on: a summary line, exit 1, and every file the folder held got its line (ok ones after FAILs).
    continued = bool(summary) and batch.rc == 1 and not any(o.note.endswith(" lines") for o in outcomes)
    quiet = dict(w.figures["quiet"])
    worst = max((v for v in quiet.values() if v is not None), default=0.0)
    rss = w.figures.get("rss")
    goals = [Goal("kinds tried", str(len(outcomes)), ">= 100" if not ctx.quick else ">= 12",
                  len(outcomes) >= (12 if ctx.quick else 100)),
             Goal("kinds with the right outcome", f"{right}/{len(outcomes)}", f"{len(outcomes)}/{len(outcomes)}",
                  right == len(outcomes)),
             Goal("Python tracebacks", str(tracebacks), "0", tracebacks == 0),
             Goal("batch continued past failures (exit 1, summary printed, later files ok)",
                  f"exit {batch.rc}, {summary.group(0) if summary else 'no summary'}", "exit 1, summary", continued),
             Goal("library items lost", str(len(gone) + (verify.rc != 0)) + (f" ({', '.join(gone)})" if gone else ""),
                  "0", not gone and verify.rc == 0 and seed.rc == 0),
             Goal("max indexed words/min on silence, noise, music", f"{worst:.2f}", "<= 1",
                  worst <= QUIET_WORDS_PER_MIN and None not in quiet.values())]
    if rss:
        goals.append(Goal("8 h silence peak RSS", f"{rss['8h'] / 1e6:.0f} MB in {rss['8h_seconds']} s "
                          f"(59 s: {rss['1min'] / 1e6:.0f} MB)", "flat", rss["8h"] <= 1.5 * rss["1min"] + 200e6))
    return Part("badinput", "Bad input: generated broken, odd and hostile files", command("badinput",
                " --quick" if ctx.quick else ""), goals,
                details={"outcomes": [o.__dict__ for o in outcomes], "quiet_words_per_min": quiet, "rss": rss,
                         "unmade": unmade, "batch_exit": batch.rc, "seconds": {"batch": round(batch.seconds)}},
                markdown=_markdown(outcomes, quiet, unmade))


def _cell(text: str) -> str:
    return shown(text).replace("|", "\\|")[:240]


def _markdown(outcomes: list[Outcome], quiet: dict, unmade: list[str]) -> str:
    lines = ["Exit codes of `earmark ingest`: 0 every file ok or skipped; 1 some file failed (each in its own "
             "line, the rest went on); 2 a usage or library error (one `earmark:` line, nothing ingested).", "",
             "| kind | expected | line printed | met |", "|---|---|---|---|"]
    lines += [f"| `{_cell(o.kind)}` | {_cell(o.expected)} | {_cell(o.line)} | "
              f"{'yes' if o.met else '**no**: ' + _cell(o.note)} |" for o in outcomes]
    lines += ["", "Indexed words per minute: " + ", ".join(f"{k} {v:.2f}" if v is not None else f"{k} ?"
                                                         for k, v in quiet.items())]
    if unmade:
        lines += ["", "Kinds that could not be made: " + "; ".join(unmade)]
    return "\n".join(lines)
