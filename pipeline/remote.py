"""`earmark search` and `earmark ask` answered by a running `earmark serve` of the same library.

A command that starts from nothing loads the embedder, the judge and the answering model every time
(about 25 s of a cold `ask` on 2 cores; see eval/results/cli-speed); a server keeps them loaded. So
`serve` leaves a note in the library (`LIBRARY/serve.json`: its address, pid and whether it wants a
token) while it runs, and the CLI, finding the note, a live pid and a server that answers `/api/ping`
for this very library, sends the request there and prints what it would have printed itself, saying
on stderr where the answer came from. `--local` (or `EARMARK_LOCAL=1`) answers in the command itself.

Only the standard library is imported here (urllib): the point is not to pay for imports.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import EarmarkError

log = logging.getLogger(__name__)

NOTE = "serve.json"
PING_SECONDS = 1.0  # a server that does not answer its ping this fast is not used


class ServerError(EarmarkError):
    """The server was found but could not answer (busy, an error); one line, as every EarmarkError."""


def note_path(library: Path) -> Path:
    return Path(library).expanduser() / NOTE


def announce(library: Path, host: str, port: int, token: bool) -> None:
    """Called by `serve` once it listens: the note the CLI finds it by."""
    from .atomic import write_atomic

    address = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    url = f"http://{'[' + address + ']' if ':' in address else address}:{port}"
    try:
        write_atomic(note_path(library), json.dumps({"url": url, "pid": os.getpid(), "token": token}).encode())
    except OSError as e:  # a read-only library still serves; the CLI just answers on its own
        log.warning("could not leave %s for the CLI (%s): `earmark ask` will not use this server", NOTE, e)


def withdraw(library: Path) -> None:
    """Called by `serve` when it stops: removes the note if it is still this process's."""
    path = note_path(library)
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def find(library: Path) -> tuple[str, str | None] | None:
    """(URL, token) of a running server of this library that this command may use, else None."""
    try:
        note = json.loads(note_path(library).read_text())
        url, pid = str(note["url"]), int(note["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)  # a server killed -9 leaves its note behind
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    token = os.environ.get("EARMARK_TOKEN") or None
    if note.get("token") and not token:
        return None
    try:
        with _open(f"{url}/api/ping", token, timeout=PING_SECONDS) as r:
            served = json.load(r).get("library")
    except (OSError, ValueError):
        return None
    if served is None or Path(served).resolve() != Path(library).expanduser().resolve():
        return None
    return url, token


def _open(url: str, token: str | None, data: bytes | None = None, timeout: float | None = None):
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=timeout)


def _call(url: str, token: str | None, data: bytes | None = None):
    try:
        return _open(url, token, data)
    except urllib.error.HTTPError as e:
        try:
            detail = json.load(e).get("detail")
        except (OSError, ValueError):
            detail = e.reason
        retry = e.headers.get("Retry-After")
        raise ServerError(f"earmark serve at {url.split('/api/')[0]} said {e.code}: {detail}"
                          + (f"; retry in {retry} s" if retry else "") + ", or pass --local") from None
    except OSError as e:
        raise ServerError(f"earmark serve at {url.split('/api/')[0]} stopped answering ({e}); "
                          "pass --local to answer here") from None


def search(server: tuple[str, str | None], query: str, k: int, mode: str, exact: bool, file: str | None) -> list[dict]:
    """The hits as `search --json` gives them."""
    url, token = server
    params = {"q": query, "k": k, "mode": mode, "exact": str(exact).lower(), **({"file": file} if file else {})}
    with _call(f"{url}/api/search?{urllib.parse.urlencode(params)}", token) as r:
        hits = json.load(r)["hits"]
    for h in hits:
        h.pop("recording", None)  # the server's addition: the CLI's shape is the contract
    return hits


def ask(server: tuple[str, str | None], question: str, mode: str, file: str | None,
        on_text: Callable[[str], None] | None = None) -> dict:
    """The answer as `ask --json` gives it; `on_text` gets the answer's text as the model writes it."""
    url, token = server
    body = json.dumps({"question": question, "mode": mode, "file": file}).encode()
    with _call(f"{url}/api/ask", token, body) as r:
        for event in _events(r):
            if event.get("event") == "token":
                if on_text:
                    on_text(event["text"])
            elif event.get("event") == "error":
                raise ServerError(f"earmark serve at {url}: {event.get('detail')}")
            elif event.get("event") == "answer":
                event.pop("event")
                for c in event.get("citations", []):
                    c.pop("recording", None)
                return event
    raise ServerError(f"earmark serve at {url} ended the answer early; pass --local to answer here")


def _events(response) -> Iterator[dict]:
    for line in response:
        if line.strip():
            yield json.loads(line)
