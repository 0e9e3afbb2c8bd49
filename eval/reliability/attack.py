"""The attack surface of `earmark serve`, tried against a real server (issue 22, part 5).

Each case is one request an attacker could make (a rebinding page, a cross-site page, a client
naming server files or traversing paths, a bad or missing token, oversized or slow uploads) with the
answer it must get; the token must appear in no log line; and schemathesis fuzzes every route from the
server's own OpenAPI schema for FUZZ_SECONDS, counting server errors (5xx).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from earmark_eval.reliability.part import Context, Goal, Part, command
from earmark_eval.reliability.server import Server, ingest

FUZZ_SECONDS = 300
FILES = ("jfk-inaugural-1961-excerpt.flac", "librispeech-1272-128104-0000.wav")
TOKEN = "reliability-" + os.urandom(12).hex()


@dataclass
class Case:
    name: str
    method: str
    path: str
    expect: tuple[int, ...]  # acceptable statuses
    headers: dict | None = None
    body: dict | None = None
    content: bytes | None = None
    leak: str = ""  # text that must not be in the answer


def cases(rid: str, secret: Path) -> list[Case]:
    """The attacks, each with the only answers that are safe."""
    cross = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
    text = {"Content-Type": "text/plain"}
    cs = [Case("DNS rebinding: Host evil.example", "GET", "/api/recordings", (400,), {"Host": "evil.example"}, leak="jfk"),
          Case("DNS rebinding: Host evil.example:port, the page", "GET", "/", (400,), {"Host": "evil.example:8000"}),
          Case("cross-site simple POST ingest (text/plain)", "POST", "/api/ingest", (403,), {**cross, **text},
               content=b'{"path": "/etc"}'),
          Case("cross-site JSON ask", "POST", "/api/ask", (403,), cross, {"question": "hi"}),
          Case("cross-site read of the recordings", "GET", "/api/recordings", (403,), {"Sec-Fetch-Site": "cross-site"}),
          Case("cross-site <audio> of a recording", "GET", f"/api/recordings/{rid}/audio", (403,),
               {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "audio"}),
          Case("same-site other port (localhost:3000)", "POST", "/api/ask", (403,),
               {"Origin": "http://localhost:3000", "Sec-Fetch-Site": "same-site"}, {"question": "hi"}),
          Case("text/plain POST without Origin", "POST", "/api/ask", (415,), text, content=b'{"question": "hi"}'),
          Case("server path /etc/shadow", "POST", "/api/ingest", (403,), body={"path": "/etc/shadow"}),
          Case("server path that does not exist", "POST", "/api/ingest", (403,), body={"path": "/nonexistent/x.wav"}),
          Case("server path, secret file", "POST", "/api/ingest", (403,), body={"path": str(secret)}),
          Case("server path, relative", "POST", "/api/ingest", (403,), body={"path": "../../etc/passwd"}),
          Case("CORS preflight", "OPTIONS", "/api/ask", (403, 405),
               {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})]
    for tail in ("audio", "transcript", "clip?start=0&end=1"):
        for rid_ in ("..%2F..%2Fetc%2Fpasswd", "../../../../etc/passwd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "0" * 64,
                     rid.upper()):
            cs.append(Case(f"traversal {rid_[:24]}…/{tail[:10]}", "GET", f"/api/recordings/{rid_}/{tail}", (404, 422),
                           leak="root:"))
    cs += [Case("job id traversal", "GET", "/api/ingest/..%2F..%2Fetc%2Fpasswd", (404,), leak="root:"),
           Case("static traversal", "GET", "/..%2F..%2F..%2Fetc%2Fpasswd", (404,), leak="root:"),
           Case("clip far past the end", "GET", f"/api/recordings/{rid}/clip?start=0&end=1e9", (400,))]
    return cs


def run(ctx: Context) -> Part:
    library = ctx.out / "library"
    ingest(ctx.earmark, library, [ctx.audio / f for f in FILES], ctx.out / "ingest.log")
    secret = ctx.out / "secret.wav"
    secret.write_bytes((ctx.audio / FILES[1]).read_bytes())
    log = ctx.out / "serve.log"
    log.unlink(missing_ok=True)
    with Server(ctx.earmark, library, log) as server:
        rid = next(r["id"] for r in httpx.get(server.url + "/api/recordings").json()["recordings"])
        results = [_try(server.url, c) for c in cases(rid, secret)]
        results += [_try_two_files(server.url), _oversize(server.url)]
        slow = _slow_clients(server.url)
        httpx.post(server.url + "/api/ask", json={"question": "warm-up"}, timeout=300).read()  # load the model first
        fuzz = _fuzz(server.url, ctx, 30 if ctx.quick else FUZZ_SECONDS)
    token = _token_case(ctx, library)
    return _part(ctx, results, slow, fuzz, token)


def _try(url: str, c: Case) -> dict:
    r = httpx.request(c.method, url + c.path, headers=c.headers, json=c.body, content=c.content, timeout=60)
    ok = r.status_code in c.expect and not (c.leak and c.leak.lower() in r.text.lower())
    return {"case": c.name, "status": r.status_code, "expect": list(c.expect), "ok": ok, "answer": r.text[:120]}


def _try_two_files(url: str) -> dict:
    r = httpx.post(url + "/api/ingest", files=[("file", ("a.wav", b"RIFF", "audio/wav")),
                                               ("file", ("b.wav", b"RIFF", "audio/wav"))])
    return {"case": "two files in one upload", "status": r.status_code, "expect": [400], "ok": r.status_code == 400,
            "answer": r.text[:120]}


def _oversize(url: str) -> dict:
    """An upload that declares 600 MB is refused (413) from its headers, before a byte is read."""
    host, port = url.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"POST /api/ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                  + f"Content-Length: {600 * 2**20}\r\n\r\n".encode())
        answer = s.recv(4096).decode(errors="replace")
    status = int(answer.split()[1]) if answer.startswith("HTTP/") else 0
    return {"case": "upload declaring 600 MB", "status": status, "expect": [413], "ok": status == 413,
            "answer": answer.split("\r\n\r\n")[-1][:120]}


def _slow_clients(url: str, n: int = 40) -> dict:
    """Slow-loris: n sockets sending headers a byte at a time, three uploads trickling their bodies; the
    server must still answer a normal request at once, and refuse a third concurrent upload."""
    host, port = url.rsplit("/", 1)[1].split(":")
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, int(port)))
        s.sendall(b"GET /api/recordings HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        socks.append(s)
    uploads = []
    for i in range(2):
        s = socket.create_connection((host, int(port)))
        s.sendall(b"POST /api/ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                  b"Content-Length: 100000\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; "
                  b"filename=\"slow.wav\"\r\n\r\nRIFF")
        uploads.append(s)
    time.sleep(1)
    t = time.monotonic()
    normal = httpx.get(url + "/api/recordings", timeout=30)
    took = time.monotonic() - t
    third = httpx.post(url + "/api/ingest", files={"file": ("c.wav", b"RIFF", "audio/wav")}, timeout=30)
    for s in socks + uploads:
        s.close()
    return {"slow_header_sockets": n, "slow_uploads": len(uploads), "normal_status": normal.status_code,
            "normal_seconds": round(took, 3), "third_upload_status": third.status_code,
            "third_upload_retry_after": third.headers.get("retry-after"),
            "ok": normal.status_code == 200 and third.status_code == 503}


def _fuzz(url: str, ctx: Context, seconds: int) -> dict:
    """schemathesis against the server's OpenAPI schema, checking that no response is a 5xx."""
    exe = Path(sys.executable).with_name("schemathesis")
    out = ctx.out / "schemathesis.txt"
    # --max-time: fuzzing repeats until the budget is spent; one worker, as one user's tool would call.
    cmd = [str(exe), "run", f"{url}/openapi.json", "--checks", "not_a_server_error", "--max-time", str(seconds),
           "--workers", "1", "--phases", "examples,coverage,fuzzing", "--continue-on-failure", "--request-timeout", "150"]
    t = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 300, cwd=ctx.out)
        text, code = p.stdout + p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        text, code = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), -1
    out.write_text(text)
    return {"command": " ".join(cmd), "exit": code, "seconds": round(time.monotonic() - t), "log": str(out),
            "server_errors": _server_errors(text), "summary": text.strip().splitlines()[-3:]}


def _server_errors(text: str) -> int:
    """Unique server-error failures, from schemathesis's summary line ("❌ ST101 Server error: 1")."""
    import re

    found = re.findall(r"Server error: (\d+)", text)
    return sum(map(int, found))


def _token_case(ctx: Context, library: Path) -> dict:
    """With a token: no token and a wrong one are 401, the right one (header or cookie) is served, and
    the token is in no line the server logs."""
    log = ctx.out / "serve-token.log"
    log.unlink(missing_ok=True)
    with Server(ctx.earmark, library, log, env={"EARMARK_TOKEN": TOKEN}) as s:
        codes = {"none": httpx.get(s.url + "/api/recordings").status_code,
                 "wrong": httpx.get(s.url + "/api/recordings", headers={"Authorization": "Bearer " + TOKEN[:-1] + "x"}).status_code,
                 "bearer": httpx.get(s.url + "/api/recordings", headers={"Authorization": "Bearer " + TOKEN}).status_code,
                 "cookie": httpx.get(s.url + "/api/recordings", cookies={"earmark_token": TOKEN}).status_code}
    leaked = TOKEN in log.read_text(errors="replace")
    return {"codes": codes, "leaked_in_log": leaked,
            "ok": codes == {"none": 401, "wrong": 401, "bearer": 200, "cookie": 200} and not leaked}


def _part(ctx: Context, results: list[dict], slow: dict, fuzz: dict, token: dict) -> Part:
    passed = sum(r["ok"] for r in results)
    goals = [Goal("attack cases answered safely", f"{passed}/{len(results)}", f"{len(results)}/{len(results)}",
                  passed == len(results)),
             Goal("token: 401 without / wrong, served with; in no log line", "ok" if token["ok"] else str(token), "ok",
                  token["ok"]),
             Goal("slow-loris: 40 slow sockets + 2 trickling uploads; normal request, third upload",
                  f"{slow['normal_status']} in {slow['normal_seconds']} s, {slow['third_upload_status']}", "200, 503",
                  slow["ok"]),
             Goal(f"schemathesis fuzzing {fuzz['seconds']} s: server errors", str(fuzz["server_errors"]), "0",
                  fuzz["server_errors"] == 0 and fuzz["exit"] == 0)]
    table = ["| case | status | expected | safe |", "|---|---|---|---|"]
    table += [f"| {r['case']} | {r['status']} | {r['expect']} | {'yes' if r['ok'] else '**no**'} |" for r in results]
    md = ("The token is compared as SHA-256 digests with `hmac.compare_digest` (constant time, and no length "
          "leak).\n\n" + "\n".join(table) + f"\n\nschemathesis: `{fuzz['command']}` → exit {fuzz['exit']}; "
          + " ".join(fuzz["summary"]))
    return Part("attack", "Attack surface of serve", command("attack"), goals,
                {"cases": results, "slow": slow, "fuzz": fuzz, "token": token}, md)
