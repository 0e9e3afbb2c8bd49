"""Run reliability parts and write report.md + report.json (see the package docstring)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

from earmark_eval.reliability.part import REAL, Context, Part

PARTS = ("crash", "badinput", "load", "attack", "injection")


def run(parts: list[str], ctx: Context) -> list[Part]:
    """Each part in order, in its own folder under ctx.out."""
    done = []
    for name in parts:
        module = importlib.import_module(f"earmark_eval.reliability.{name}")
        folder = ctx.out / name
        folder.mkdir(parents=True, exist_ok=True)
        ctx.progress(f"reliability: {name}")
        t = time.monotonic()
        part = module.run(Context(**{**ctx.__dict__, "out": folder}))
        part.seconds = round(time.monotonic() - t, 1)
        done.append(part)
    return done


def markdown(parts: list[Part]) -> str:
    lines = ["# earmark reliability report", "",
             "Every figure against its goal; each part's command reproduces it alone.", "",
             "| part | measure | value | goal | met |", "|---|---|---|---|---|"]
    for p in parts:
        lines += [f"| {p.name} | {g.measure} | {g.value} | {g.goal} | {'yes' if g.met else '**no**'} |"
                  for g in p.goals]
    for p in parts:
        lines += ["", f"## {p.title}", "", f"`{p.command}` ({p.seconds:.0f} s)", "", p.markdown.strip()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m earmark_eval.reliability", description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("reliability-out"))
    ap.add_argument("--audio", type=Path, default=REAL, help="the real recordings (default ../shared/data/real)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {','.join(PARTS)}")
    ap.add_argument("--trials", type=int, default=20, help="kill -9 trials (crash)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="the short version the test suite runs")
    ap.add_argument("--merge", type=Path, nargs="+", metavar="REPORT_JSON",
                    help="write one report from parts measured in separate runs (their report.json files)")
    args = ap.parse_args(argv)
    if args.merge:
        return write(args.out, [Part.from_json(p) for f in args.merge for p in json.loads(f.read_text())])
    names = [n.strip() for n in args.parts.split(",") if n.strip()]
    unknown = sorted(set(names) - set(PARTS))
    if unknown:
        ap.error(f"unknown part(s) {', '.join(unknown)}: choose from {', '.join(PARTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    parts = run(names, Context(out=args.out, audio=args.audio, seed=args.seed, trials=args.trials,
                               quick=args.quick, progress=_say))
    return write(args.out, parts)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def write(out: Path, parts: list[Part]) -> int:
    """report.json and report.md in out; exit code 0 if every goal is met, else 1."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps([p.to_json() for p in parts], indent=1, ensure_ascii=False))
    (out / "report.md").write_text(markdown(parts))
    _say(f"report: {out / 'report.md'}")
    for p in parts:
        for g in p.goals:
            _say(f"  {p.name}: {g.measure}: {g.value} (goal {g.goal}){'' if g.met else '  NOT MET'}")
    return 0 if all(g.met for p in parts for g in p.goals) else 1


if __name__ == "__main__":
    sys.exit(main())
