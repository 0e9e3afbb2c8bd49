"""Real Ray nodes on this machine, for the tests and eval/ray_speed.py: `ray start --block` in a session
of its own, so a node can be killed whole (its raylet, agents and workers) as a crash would."""

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


def running_tasks(proc: subprocess.Popen) -> list[str]:
    """The tasks a node started by `node` is running now: the titles (`ray::NAME`) Ray gives its worker
    processes while they run a task (an idle worker is `ray::IDLE`; the node's own agents are
    `ray::DashboardAgent`, `ray::RuntimeEnvAgent`), found by the node's session (a worker has a process
    group of its own)."""
    titles = []
    for pid in _session(proc):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except (OSError, ProcessLookupError):
            continue  # (gone since listed)
        if title.startswith("ray::") and not title.startswith("ray::IDLE") and not title.split()[0].endswith("Agent"):
            titles.append(title.split()[0])
    return titles


def _session(proc: subprocess.Popen) -> list[int]:
    """The processes of the session a node was started in: its raylet, agents and workers."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getsid(int(pid)) == proc.pid:
                pids.append(int(pid))
        except (OSError, ProcessLookupError):
            continue  # (gone since listed)
    return pids


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL to the whole node at once, as a crash: its session, workers included (each worker runs
    in a process group of its own, so a kill of the node's group alone leaves them running)."""
    for pid in _session(proc):
        try:
            os.kill(pid, signal.SIGKILL)
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
