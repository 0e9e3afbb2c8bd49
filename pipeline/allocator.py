"""The memory allocator the `earmark` command runs with: tcmalloc where it is installed.

Why: with glibc's malloc, a long ingest's resident memory creeps up piece by piece (about 570 MiB
after the first 5-minute piece of a 3-hour file, 820 MiB by the twentieth) although nothing in Python
grows. CTranslate2's decoder allocates buffers of a different size for every batch, and glibc's
dynamic mmap threshold moves such freed buffers onto the heap, where they fragment. Measured on the
stitched archives (eval/, 2 cores): 10 / 60 / 180 min peaked at 797 / 927 / 1120 MiB with glibc
(+40%), and at 1066 / 1113 / 1219 MiB (+14%) with tcmalloc (gperftools, Debian's libtcmalloc-minimal4),
which also ingested 18.3× / 19.5× / 19.5× realtime against glibc's 16–17×. jemalloc was slower
(60 min: 14.3×, 888 MiB) and hardly flatter; glibc's own M_MMAP_THRESHOLD cost 15% of the speed.

Freed memory is not returned to the system by itself: after each 5-minute piece of a long file
tcmalloc held ~400 MiB free in its page heap (heap 755 MiB, 300 allocated), so a process's resident
memory was its working set plus whatever the worst piece so far had left behind, and the longer the
file, the worse that piece (60 min: 1152 MiB against 1036 for 10). `release` hands the free pages back
after each piece: eval at 99326c9, 10 / 60 / 180 min peaked at 883 / 961 / 988 MiB (+9% / +12%; the
run before, 955 / 1151 / 1124), at the same 18.4-18.5x realtime.

A process cannot change its allocator once it runs, so the console entry point re-executes itself
once with LD_PRELOAD set (`reexec`), and child processes that ingest inherit the environment.
EARMARK_MALLOC=system keeps glibc's malloc. Only Linux; elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes.util
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

LIBRARY = "tcmalloc_minimal"
_MARK = "EARMARK_ALLOCATOR"  # set in the re-executed process, so it never re-executes again


def library(env: dict[str, str] | None = None) -> str | None:
    """The tcmalloc shared library's name as the dynamic loader finds it, or None (not installed, not
    Linux, or EARMARK_MALLOC=system in ``env``, by default this process's environment)."""
    setting = (os.environ if env is None else env).get("EARMARK_MALLOC", "tcmalloc")
    if not sys.platform.startswith("linux") or setting == "system":
        return None
    return ctypes.util.find_library(LIBRARY)


def environ(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with tcmalloc preloaded, if it is installed."""
    env = dict(os.environ if base is None else base)
    lib = library(env)
    if lib and lib not in env.get("LD_PRELOAD", ""):
        env["LD_PRELOAD"] = " ".join(filter(None, [env.get("LD_PRELOAD", ""), lib]))
        # tcmalloc reports every allocation above 1 GiB on stderr; model loading makes a few.
        env.setdefault("TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD", str(1 << 40))
    return env


def reexec(argv: list[str]) -> None:
    """Replace this process by the same command with tcmalloc preloaded; return if there is no need."""
    if os.environ.get(_MARK) or active():
        return
    env = environ()
    if env.get("LD_PRELOAD", "") == os.environ.get("LD_PRELOAD", ""):
        return  # not installed, or EARMARK_MALLOC=system
    env[_MARK] = "1"
    # -P (-I before Python 3.11): `-m` would otherwise put the working directory first on sys.path,
    # and a folder named `pipeline` there would run instead of earmark.
    safe_path = "-P" if sys.version_info >= (3, 11) else "-I"
    try:
        os.execve(sys.executable, [sys.executable, safe_path, "-m", "pipeline", *argv], env)
    except OSError as e:  # cannot exec here: run on with the allocator we have
        log.debug("could not re-execute with tcmalloc: %s", e)


def release() -> None:
    """Give the memory the allocator holds free back to the system (see the module docstring): tcmalloc's
    free page heap, or glibc's free heap top and chunks (malloc_trim). Cheap: pages are only
    faulted in again when the next piece needs them."""
    if not sys.platform.startswith("linux"):
        return
    c = ctypes.CDLL(None)
    if hasattr(c, "MallocExtension_ReleaseFreeMemory"):  # tcmalloc is mapped into this process
        c.MallocExtension_ReleaseFreeMemory()
    elif hasattr(c, "malloc_trim"):
        c.malloc_trim(ctypes.c_size_t(0))


def describe() -> str:
    """The allocator this process runs with, for logs and reports."""
    return active() or "the C library's malloc"


def active() -> str | None:
    """The allocator library mapped into this process, if it is tcmalloc (read from /proc/self/maps)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    return next((line.split()[-1] for line in maps.splitlines() if "libtcmalloc" in line), None)
