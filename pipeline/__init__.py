"""earmark: ask questions of your recordings and get answers that cite the exact second.

Stages, one module each, in the order data flows: audio → transcribe → chunk → embed → store →
search → answer. `ingest` and `cli` sit on top and hold no pipeline logic of their own.
"""

__version__ = "0.1.0"
