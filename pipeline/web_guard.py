"""Who may talk to `earmark serve`: the checks every request passes before a route sees it.

A server on 127.0.0.1 is reachable by every web page the user opens, so a loopback bind alone
protects nothing. Three attacks, three checks (an ASGI middleware, `Guard`):

- **DNS rebinding**: a page on evil.example re-points its name at 127.0.0.1 and reads the API as
  its own origin. The browser still sends `Host: evil.example`, so only known host names are served
  (loopback names, the bound address, and any the user adds with `--allowed-host`); 400 otherwise.
- **Cross-site requests**: any page can send a "simple" POST (text/plain, a form) without a CORS
  preflight, or point an <audio> at the API. Browsers say where a request comes from (Fetch
  Metadata's `Sec-Fetch-Site`, and `Origin` on every POST): /api answers only its own page
  (same-origin) and clients that are not browsers (no such header); 403 otherwise. No CORS header
  is ever sent, so no other origin may read a response.
- **Bodies that dodge a preflight**: a POST to /api must be `application/json` or
  `multipart/form-data` (415 otherwise).

Before any request: `bind_allowed` refuses to serve beyond loopback without a token.

Starlette's TrustedHostMiddleware checks the Host alone and answers in plain text; this answers in
the API's JSON (`{"detail"}`) and checks all three in one place.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
SAFE_FETCH_SITES = ("same-origin", "none")  # "none": the user typed the address or opened a bookmark
BODY_TYPES = ("application/json", "multipart/form-data")


def host_name(host: str) -> str:
    """The name part of a Host header or address: no port, no IPv6 brackets, lower case."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host[1:host.find("]")] if "]" in host else host[1:]
    if host.count(":") == 1:  # name:port (an IPv6 address without brackets has several colons)
        return host.split(":")[0]
    return host


def bind_allowed(host: str, token: str | None) -> bool:
    """Whether serving on `host` is safe: loopback always, any other address only behind a token."""
    if token:
        return True
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name that is not localhost may resolve to anything


def allowed_hosts(bind: str, extra: Iterable[str] = ()) -> frozenset[str] | None:
    """The Host names served: loopback names, the bound address and `extra`; None serves any (an
    all-interfaces bind, which always has a token: the token, not the name, protects it then)."""
    extra = [host_name(h) for h in extra if h.strip()]
    try:
        unspecified = ipaddress.ip_address(host_name(bind)).is_unspecified
    except ValueError:
        unspecified = False
    if unspecified and not extra:
        return None
    return frozenset((*LOOPBACK_NAMES, host_name(bind), *extra))


class Guard:
    """ASGI middleware refusing rebinding hosts, cross-site API requests and odd POST bodies."""

    def __init__(self, app, hosts: frozenset[str] | None):
        self.app, self.hosts = app, hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            refusal = self.refusal(scope)
            if refusal is not None:
                return await _refuse(send, *refusal)
        await self.app(scope, receive, send)

    def refusal(self, scope) -> tuple[int, str] | None:
        """(status, reason) for a request that must not reach a route, else None."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if self.hosts is not None and host_name(host) not in self.hosts:
            return 400, (f"this server does not answer to the host name {host_name(host)!r}: use "
                         "http://127.0.0.1, or start serve with --allowed-host NAME")
        if not scope["path"].startswith("/api"):
            return None  # the page itself holds no data, and a link from anywhere may open it
        site = headers.get("sec-fetch-site")
        if site is not None and site not in SAFE_FETCH_SITES:
            return 403, f"cross-site request refused ({site}): only earmark's own page may call its API"
        origin = headers.get("origin")
        if origin is not None and origin not in (f"http://{host}", f"https://{host}"):
            return 403, f"request from another origin ({origin[:80]}) refused: only earmark's own page may call its API"
        if scope["method"] == "POST":
            kind = headers.get("content-type", "").split(";")[0].strip().lower()
            if kind not in BODY_TYPES:
                return 415, f"send the body as {' or '.join(BODY_TYPES)}, not {kind or 'no content type'}"
        return None


async def _refuse(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
