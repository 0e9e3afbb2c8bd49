"""earmark's measurement side: metrics, reference texts, question sets and stitched test archives.

Installed as the import package ``earmark_eval`` (the directory is ``eval/``). Nothing here imports
``pipeline``: eval measures the pipeline from the outside, through the result shapes of issue 3.

- ``metrics``: retrieval, answer, transcription and latency metrics (pure functions).
- ``references``: the reference transcript for a recording (eval's own single-stream text if any),
  and the recordings' languages and durations (``recordings.json``).
- ``stitch``: long archives built from the real clips, with a manifest of true offsets.
- ``align``: the one-off word-timestamp run that set gold spans (``sets/alignments/``).
- ``build_sets``: writes ``sets/real.jsonl`` and ``phrases.json`` from its spec and those alignments.
"""
