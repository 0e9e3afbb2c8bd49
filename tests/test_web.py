"""The web API (`earmark serve`) on a real small library, through FastAPI's TestClient."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from pipeline.config import ServeOptions  # noqa: E402
from pipeline.web import create_app  # noqa: E402
from pipeline.web_guard import bind_allowed  # noqa: E402

JFK = "jfk-inaugural-1961-excerpt.flac"
BASE = "http://127.0.0.1:8000"  # TestClient's own "testserver" is a host name the server refuses


@pytest.fixture(scope="module")
def client(sample_library, embedder):
    with TestClient(create_app(sample_library.root, embedder.name), base_url=BASE) as c:
        yield c


@pytest.fixture(scope="module")
def jfk(client) -> dict:
    return next(r for r in client.get("/api/recordings").json()["recordings"] if r["file"] == JFK)


def test_search_has_the_cli_shape_plus_recording_ids(client, jfk):
    r = client.get("/api/search", params={"q": "ask what you can do for your country", "k": 3})
    assert r.status_code == 200
    hits = r.json()["hits"]
    assert hits and hits[0]["file"] == JFK and hits[0]["recording"] == jfk["id"]
    assert {"file", "start", "end", "text", "score", "recording"} <= set(hits[0])
    exact = client.get("/api/search", params={"q": "your country", "exact": "true"}).json()["hits"]
    assert exact and all("country" in h["text"].lower() for h in exact)


def test_bad_search_mode_is_422(client):
    assert client.get("/api/search", params={"q": "x", "mode": "magic"}).status_code == 422


def test_recordings_and_transcript(client, jfk):
    assert jfk["duration"] == pytest.approx(11, abs=1) and jfk["status"] == "indexed" and "en" in jfk["languages"]
    assert jfk["passages"] >= 1 and len(jfk["id"]) == 64
    t = client.get(f"/api/recordings/{jfk['id']}/transcript").json()
    assert t["file_name"] == JFK and "country" in " ".join(s["text"] for s in t["segments"]).lower()
    seg = t["segments"][0]
    assert {"start", "end", "text", "words", "speaker"} <= set(seg) and seg["words"][0]["start"] >= 0


def test_audio_supports_range_requests(client, jfk):
    original = (Path(__file__).resolve().parents[1] / "samples" / JFK).read_bytes()
    whole = client.get(f"/api/recordings/{jfk['id']}/audio")
    assert whole.status_code == 200 and whole.content == original
    part = client.get(f"/api/recordings/{jfk['id']}/audio", headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == original[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(original)}"
    beyond = client.get(f"/api/recordings/{jfk['id']}/audio", headers={"Range": f"bytes={len(original) + 10}-"})
    assert beyond.status_code == 416


def test_clip_download(client, jfk):
    r = client.get(f"/api/recordings/{jfk['id']}/clip", params={"start": 1.0, "end": 3.0})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    assert r.content[:4] == b"RIFF" and len(r.content) > 44
    assert "attachment" in r.headers["content-disposition"]
    past = client.get(f"/api/recordings/{jfk['id']}/clip", params={"start": 500, "end": 501})
    assert past.status_code == 400 and "past its end" in past.json()["detail"]


@pytest.mark.parametrize("rid", ["..%2F..%2Fetc%2Fpasswd", "../../etc/passwd", "ABC", "0" * 64])
def test_ids_that_are_not_known_recordings_are_refused(client, rid):
    for what in ("audio", "transcript", "clip?start=0&end=1"):
        r = client.get(f"/api/recordings/{rid}/{what}")
        assert r.status_code in (404, 422), (rid, what, r.status_code)
        assert "root:" not in r.text


def test_ask_streams_tokens_then_the_cited_answer(client, jfk):
    r = client.post("/api/ask", json={"question": "What did Kennedy ask Americans to do?"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    events = [json.loads(line) for line in r.text.splitlines() if line.strip()]
    final = events[-1]
    assert final["event"] == "answer" and final["found"] is True
    assert {"question", "answer", "found", "citations"} <= set(final)
    c = final["citations"][0]
    assert c["file"] == JFK and c["recording"] == jfk["id"] and "country" in c["text"].lower()
    assert {"n", "file", "start", "end", "text"} <= set(c)
    assert all(e["event"] == "token" for e in events[:-1])


@pytest.mark.parametrize("body", [{"question": ""}, {"question": "   "}, {}])
def test_empty_question_is_4xx(client, body):
    r = client.post("/api/ask", json=body)
    assert r.status_code == 422 and r.json()["detail"]


def test_token_protected_app_needs_the_bearer(sample_library, embedder):
    with TestClient(create_app(sample_library.root, embedder.name, ServeOptions(token="s3cret")), base_url=BASE) as c:
        assert c.get("/api/recordings").status_code == 401
        assert c.get("/api/recordings", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/recordings", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        c.cookies.set("earmark_token", "s3cret")  # what the page sets for its <audio> element
        assert c.get("/api/recordings").status_code == 200
        assert c.get("/").status_code == 200  # the page itself holds no data; it asks for the token


def test_upload_is_ingested_in_the_background_and_becomes_searchable(tmp_path, embedder):
    import time

    wav = Path(__file__).resolve().parents[1] / "samples" / "librispeech-1272-128104-0000.wav"
    with TestClient(create_app(tmp_path / "lib", embedder.name), base_url=BASE) as c:
        assert c.get("/api/ingest/unknown").status_code == 404
        r = c.post("/api/ingest", files={"file": ("../../quilter.wav", wav.read_bytes(), "audio/wav")})
        assert r.status_code == 202
        job, deadline = r.json(), time.monotonic() + 300
        while job["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, job
            time.sleep(0.5)
            job = c.get(f"/api/ingest/{job['job']}").json()
        assert job["status"] == "done" and job["files"][0]["status"] == "ingested", job
        hits = c.get("/api/search", params={"q": "apostle of the middle classes"}).json()["hits"]
        assert hits and hits[0]["recording"] == job["files"][0]["recording"]
    assert (tmp_path / "lib" / "uploads").is_dir() and not (tmp_path / "quilter.wav").exists()


def test_oversize_upload_is_413(tmp_path, embedder, monkeypatch):
    import pipeline.web as web

    monkeypatch.setattr(web, "MAX_UPLOAD", 1000)
    with TestClient(create_app(tmp_path / "lib", embedder.name), base_url=BASE) as c:
        r = c.post("/api/ingest", files={"file": ("big.wav", b"\0" * 5000, "audio/wav")})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]


@pytest.mark.parametrize("host,token,ok", [("127.0.0.1", None, True), ("localhost", None, True), ("::1", None, True),
                                           ("0.0.0.0", None, False), ("192.168.1.5", None, False),
                                           ("example.com", None, False), ("0.0.0.0", "t", True)])
def test_bind_allowed(host, token, ok):
    assert bind_allowed(host, token) is ok


def test_serve_refuses_a_public_bind_without_token(run_cli, monkeypatch):
    monkeypatch.delenv("EARMARK_TOKEN", raising=False)
    code, out, err = run_cli("serve", "--host", "0.0.0.0")
    assert code == 2 and "token" in err and len(err.strip().splitlines()) == 1
