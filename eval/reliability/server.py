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
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [*earmark, "--library", str(library), "serve", "--port", str(self.port), *args]
        self.log, self.env = log, {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        self._out = self.log.open("ab")
        self.proc = subprocess.Popen(self.cmd, stdout=self._out, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
        deadline = time.monotonic() + 180
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
