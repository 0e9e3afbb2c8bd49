"""Reliability: crash, bad input, load and attack, measured from the outside (issue 22).

Each part drives the real ``earmark`` command or server in processes of its own and returns a
``Part``: goals measured against their targets, the details behind them, and the command that
reproduces it. ``__main__`` runs the parts asked for and writes ``report.md`` and ``report.json``.

    .venv/bin/python -m earmark_eval.reliability --out reliability-out            # every part
    .venv/bin/python -m earmark_eval.reliability --parts crash,attack --trials 5   # some

Parts (one module each): ``crash`` (kill -9 during ingest, then resume; two writers), ``badinput``
(generated broken and odd files), ``load`` (concurrent clients against ``serve``), ``attack`` (the
server's attack surface, schemathesis fuzzing) and ``injection`` (recordings that speak instructions to
an AI). Like the rest of eval/, nothing here imports ``pipeline`` except through a subprocess.
"""
