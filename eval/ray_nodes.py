"""Real Ray nodes on this machine, for the tests and eval/ray_speed.py: `ray start --block` in a process
group of its own, so a node can be killed whole (its raylet and workers) as a crash would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

RAY = Path(sys.executable).with_name("ray")


def alive_nodes(address: str) -> int:
    """How many nodes of the cluster at `address` are alive (0 if none answers), asked by a new driver."""
    code = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
            "print(sum(n['Alive'] for n in ray.nodes()))")
    run = subprocess.run([sys.executable, "-c", code, address], capture_output=True, text=True, timeout=120)
    return int(run.stdout.strip().splitlines()[-1]) if run.returncode == 0 and run.stdout.strip() else 0


@contextmanager
def node(args: list[str], log: Path, cpus: int = 1):
    """`ray start --block --num-cpus N ARGS`, killed whole (SIGKILL) on the way out."""
    with open(log, "w") as out:
        proc = subprocess.Popen([str(RAY), "start", "--block", "--num-cpus", str(cpus), "--disable-usage-stats", *args],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        kill(proc)


def kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(30)


def wait_nodes(address: str, n: int, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while alive_nodes(address) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Ray cluster at {address} has fewer than {n} nodes after {seconds:.0f} s")
        time.sleep(1)


def head_args(port: int, temp: str) -> list[str]:
    """A head node on 127.0.0.1:port, no dashboard, its session files under `temp` (kept short: Ray's
    socket paths must fit in 107 bytes)."""
    return ["--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--include-dashboard=false",
            "--temp-dir", temp]
