"""`python -m pipeline` runs the `earmark` command (allocator.reexec relies on it)."""

from .cli import entry

entry()
