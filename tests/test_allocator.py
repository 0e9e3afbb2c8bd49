"""The `earmark` command runs with tcmalloc (flat memory on long files), unless told not to."""

import os
import subprocess
import sys

import pytest

from pipeline import allocator


def _environ(**env):
    """This environment without what the allocator sets or reads, plus ``env``."""
    clean = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "EARMARK_ALLOCATOR", "EARMARK_MALLOC")}
    return {**clean, **env}


def _earmark(tmp_path, **env):
    proc = subprocess.run([sys.executable, "-m", "pipeline", "-vv", "--library", str(tmp_path / "lib"), "status"],
                          capture_output=True, text=True, env=_environ(**env), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD is Linux's")
def test_earmark_runs_with_tcmalloc_mapped(tmp_path):
    assert allocator.library(), "libtcmalloc-minimal4 is not installed (scripts/setup.sh installs it)"
    line = next(x for x in _earmark(tmp_path).splitlines() if "memory allocator: " in x)
    assert "libtcmalloc_minimal" in line  # read from /proc/self/maps: really loaded, not just asked for


def test_system_malloc_on_request(tmp_path):
    line = next(x for x in _earmark(tmp_path, EARMARK_MALLOC="system").splitlines() if "memory allocator: " in x)
    assert line.endswith("the C library's malloc")
    assert "LD_PRELOAD" not in allocator.environ({"EARMARK_MALLOC": "system"})


def test_environ_keeps_what_is_preloaded_already():
    env = allocator.environ({"LD_PRELOAD": "libfoo.so"})
    assert env["LD_PRELOAD"].split()[0] == "libfoo.so"
    assert env["LD_PRELOAD"].split()[1:] == [allocator.library()]
    assert allocator.environ(env)["LD_PRELOAD"] == env["LD_PRELOAD"]  # never preloaded twice


def test_main_in_process_never_reexecutes(run_cli, monkeypatch, tmp_path):
    """Only the `earmark` command re-executes itself: a test or tool calling `main` keeps its process."""
    calls = []
    monkeypatch.setattr(os, "execve", lambda *args: calls.append(args))
    monkeypatch.delenv("EARMARK_ALLOCATOR", raising=False)
    code, _, err = run_cli("--library", tmp_path / "lib", "status")
    assert code == 0, err
    assert calls == []


def test_reexec_runs_earmark_not_a_pipeline_folder_in_the_working_directory(tmp_path):
    """`earmark` started in a folder that has its own `pipeline` package still runs earmark."""
    decoy = tmp_path / "pipeline"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise SystemExit('the decoy pipeline package ran')\n")
    (decoy / "__main__.py").write_text("raise SystemExit('the decoy pipeline package ran')\n")
    command = os.path.join(os.path.dirname(sys.executable), "earmark")
    proc = subprocess.run([command, "--library", str(tmp_path / "lib"), "status"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=_environ())
    assert proc.returncode == 0, proc.stderr
    assert "0 recordings" in proc.stdout


_HOLD_AND_FREE = """
import numpy as np
from pipeline import allocator
def rss(): return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]) >> 10
blocks = [np.ones(1 << 17) for _ in range(256)]  # 256 MiB in 1 MiB buffers, as a decoder's are
del blocks
freed = rss()
allocator.release()
print(freed, rss())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD is Linux's")
def test_release_hands_freed_memory_back_to_the_system():
    """tcmalloc keeps freed pages for reuse; after each piece of a long file they go back, or the peak
    grows with the worst piece so far."""
    proc = subprocess.run([sys.executable, "-c", _HOLD_AND_FREE], capture_output=True, text=True, timeout=120,
                          env=allocator.environ(_environ()))
    assert proc.returncode == 0, proc.stderr
    freed, released = map(int, proc.stdout.split())
    assert freed - released >= 200, (freed, released)  # MiB
