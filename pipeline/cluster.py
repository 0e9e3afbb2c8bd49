"""Ingest on a Ray cluster (`earmark ingest --ray [auto|ADDRESS]`, or EARMARK_RAY).

Ray runs the heavy, stateless part of ingest: decoding, voice activity detection, transcription,
translation and diarization of one file per task (`ingest.transcribe_file`, the function the local
worker processes run). The driver, the process that runs `earmark ingest`, stays the library's only
writer: it receives each transcript, and embeds, stores and catalogues it exactly as a local ingest
does, under the library's writer lock, so the catalog never has two writers and a library made on a
cluster is the library a local ingest makes.

Idempotent by construction: a task writes nothing (it returns a transcript), so a task that Ray
retries after its worker or node died cannot store anything twice; the driver stores a file only
once its transcript arrives, and a driver killed midway resumes as any ingest does (files already
transcribed are not sent again). Ray keeps worker processes between tasks, and the models are
cached per process (transcribe.backend, diarize's caches), so weights load once per worker.

Every node must run the same earmark (the same package in the same Python) and read the files at
the paths the driver gives (a shared mount): tasks get a path, not the bytes. Ray itself is an
optional dependency (the `ray` extra); without it, or without a cluster at the address, ingest
stops with one line saying what to do.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future

from .errors import ConfigError, EarmarkError

log = logging.getLogger(__name__)

class ClusterError(EarmarkError):
    """A file's task failed on the cluster for a reason of the cluster's (not of the file's)."""


# A task whose worker or node dies is run again, on another worker, this many times.
RETRIES = 3


def connect(address: str) -> None:
    """Join the Ray cluster at `address` ("auto": the one this machine belongs to)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("ingest --ray needs Ray: pip install 'earmark[ray]' (the same version on every "
                          "node), or ingest without --ray") from None
    if ray.is_initialized():
        return
    if address != "auto":
        _reachable(address)  # ray.init would retry an address with nothing behind it for minutes
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise _no_cluster(address, " ".join(str(e).split())[:160]) from e


def _reachable(address: str) -> None:
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except ValueError:
        raise ConfigError(f"--ray {address!r} is not an address: give HOST:PORT of the cluster's head "
                          "(6379 unless `ray start --head --port` said otherwise), or auto") from None
    except OSError as e:
        raise _no_cluster(address, str(e.strerror or e)) from None


def _no_cluster(address: str, detail: str) -> ConfigError:
    return ConfigError(f"no Ray cluster at {address} ({detail}): start one with `ray start --head` "
                       "(and `ray start --address HEAD:6379` on the other nodes), or ingest without --ray")


class RayPool:
    """A few methods of concurrent.futures.Executor over Ray tasks: what ingest's _Transcriber uses."""

    def __init__(self, address: str, cpus_per_task: float = 1.0):
        import ray

        connect(address)
        self.ray = ray
        self.cpus = cpus_per_task
        self.refs: list = []
        self._remote: dict = {}

    def submit(self, fn, *args) -> Future:
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = self.ray.remote(num_cpus=self.cpus, max_retries=RETRIES,
                                                        retry_exceptions=False)(fn)
        ref = remote.remote(*args)
        self.refs.append(ref)
        done: Future = Future()

        def settle(f: Future) -> None:
            try:
                done.set_result(f.result())
            except self.ray.exceptions.RayTaskError as e:  # the task's own error, as a local worker raises it
                done.set_exception(e.cause if isinstance(e.cause, BaseException) else e)
            except self.ray.exceptions.RayError as e:  # its node died RETRIES times, or the cluster went away
                detail = " ".join(str(e).split())[:200]
                done.set_exception(ClusterError(f"the Ray task transcribing this file failed ({type(e).__name__}: "
                                                f"{detail}); nothing was stored for it: ingest again to retry it"))
            except BaseException as e:  # noqa: BLE001 - handed on to whoever waits for it
                done.set_exception(e)

        ref.future().add_done_callback(settle)
        return done

    def nodes(self) -> int:
        return sum(1 for n in self.ray.nodes() if n.get("Alive"))

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        if cancel_futures:
            for ref in self.refs:
                try:
                    self.ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - finished, or its node is gone: nothing to cancel
                    log.debug("could not cancel a Ray task", exc_info=True)
        self.refs.clear()
        self.ray.shutdown()  # this driver leaves the cluster; the cluster stays up
