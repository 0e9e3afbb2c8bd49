"""A real `earmark serve` in a process of its own, on a free loopback port, for the load and attack parts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(overrides: dict | None = None) -> dict:
    """This process's environment with overrides applied: a value sets a variable, None removes it."""
    merged = {**os.environ, **(overrides or {})}
    return {k: v for k, v in merged.items() if v is not None}


def ingest(earmark: tuple[str, ...], library: Path, paths: list[Path], log: Path) -> None:
    """Build a library with the real command (no diarization is skipped: the library is the user's)."""
    with log.open("ab") as out:
        code = subprocess.run([*earmark, "--library", str(library), "-q", "ingest", *map(str, paths)],
                              stdout=out, stderr=subprocess.STDOUT).returncode
    if code not in (0, 1):
        raise RuntimeError(f"earmark ingest exited {code}; see {log}")


class Server:
    """`earmark serve` started by `with Server(...) as s:`; s.url, s.rss(); stopped with SIGTERM."""

    def __init__(self, earmark: tuple[str, ...], library: Path, log: Path, *args: str, env: dict | None = None):
        """env: variables set (or, with None as the value, removed) on top of this process's environment."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [*earmark, "--library", str(library), "serve", "--port", str(self.port), *args]
        self.log, self.env = log, child_env(env)
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        return self.start()

    def start(self) -> Server:
        """Start it and return once it answers (RuntimeError if it exits or 300 s pass)."""
        self._out = self.log.open("ab")
        self.proc = subprocess.Popen(self.cmd, stdout=self._out, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(self.url + "/", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"earmark serve did not start; see {self.log}")
            time.sleep(0.5)

    def rss_mib(self) -> float:
        import psutil

        try:
            p = psutil.Process(self.proc.pid)
            return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)]) / 2**20
        except psutil.NoSuchProcess:
            return 0.0

    def __exit__(self, *exc) -> None:
        self.stop()

    def upload(self, path: Path) -> dict:
        """POST /api/ingest with the file as multipart field `file`; the job it started."""
        with path.open("rb") as f:
            r = httpx.post(self.url + "/api/ingest", files={"file": (path.name, f)}, timeout=60)
        r.raise_for_status()
        return r.json()

    def wait_job(self, job: str, timeout: float = 900) -> dict:
        """The job's state once it ended (done, failed, interrupted), or {"status": "timeout"}."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = httpx.get(f"{self.url}/api/ingest/{job}", timeout=10).raise_for_status().json()
            if state["status"] in ("done", "failed", "interrupted"):
                return state
            time.sleep(0.5)
        return {"status": "timeout"}

    def kill(self) -> None:
        """SIGKILL to the server's whole process group (its workers too), as a crash would."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._out.close()

    def stop(self) -> float:
        """SIGTERM, then seconds until it exited (SIGKILL after 60 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        t = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._out.close()
        return time.monotonic() - t
