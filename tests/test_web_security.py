"""Who may use `earmark serve`, and what it does under pressure: rebinding hosts, cross-site requests,
server paths, bounded asks and jobs, clean uploads and a prompt shutdown (issue 22, parts 4 and 5)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from pipeline.config import ServeOptions  # noqa: E402
from pipeline.web import create_app  # noqa: E402
from pipeline.web_jobs import MAX_JOBS, IngestJob, Jobs  # noqa: E402

from .conftest import REAL, SAMPLES  # noqa: E402

BASE = "http://127.0.0.1:8000"
JFK = "jfk-inaugural-1961-excerpt.flac"


@pytest.fixture(scope="module")
def client(sample_library, embedder):
    with TestClient(create_app(sample_library.root, embedder.name), base_url=BASE) as c:
        yield c


def _wait(c: TestClient, job: dict, seconds: float = 300) -> dict:
    deadline = time.monotonic() + seconds
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.3)
        job = c.get(f"/api/ingest/{job['job']}").json()
    return job


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.nip.io", "10.0.0.5"])
def test_a_rebinding_host_name_reads_nothing(client, host):
    r = client.get("/api/recordings", headers={"Host": host})
    assert r.status_code == 400 and "host name" in r.json()["detail"]
    assert "recordings" not in r.json() and JFK not in r.text
    assert client.get("/", headers={"Host": host}).status_code == 400


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost:8000", "LOCALHOST", "[::1]:8000"])
def test_loopback_host_names_are_served(client, host):
    assert client.get("/api/recordings", headers={"Host": host}).status_code == 200


def test_an_allowed_host_name_is_served(sample_library, embedder):
    app = create_app(sample_library.root, embedder.name, ServeOptions(allowed_hosts=("earmark.lan",)))
    with TestClient(app, base_url="http://earmark.lan") as c:
        assert c.get("/api/recordings").status_code == 200
        assert c.get("/api/recordings", headers={"Host": "other.lan"}).status_code == 400


@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"}, {"Origin": "http://127.0.0.1:9999"},
                                     {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
                                     {"Sec-Fetch-Site": "same-site"}])
def test_cross_site_requests_are_refused_before_any_route(client, headers):
    before = len(client.app.state.earmark.jobs)
    simple = client.post("/api/ingest", content=b'{"path": "/etc"}',
                         headers={**headers, "Content-Type": "text/plain"})
    assert simple.status_code in (403, 415)
    for r in (client.post("/api/ask", json={"question": "What did Kennedy ask?"}, headers=headers),
              client.get("/api/recordings", headers=headers)):
        assert r.status_code == 403 and "own page" in r.json()["detail"]
    assert len(client.app.state.earmark.jobs) == before  # no ingest was started
    assert "access-control-allow-origin" not in client.get("/api/recordings").headers


def test_the_page_itself_and_clients_that_are_not_browsers_are_served(client):
    own = {"Origin": BASE, "Sec-Fetch-Site": "same-origin"}
    assert client.get("/api/recordings", headers=own).status_code == 200
    assert client.get("/api/recordings", headers={"Sec-Fetch-Site": "none"}).status_code == 200
    assert client.get("/", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200  # a link may open it
    assert client.get("/api/recordings").status_code == 200  # curl sends neither header


def test_a_post_body_that_would_skip_a_preflight_is_415(client):
    r = client.post("/api/ask", content=b'{"question": "What did Kennedy ask?"}', headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and "application/json" in r.json()["detail"]


def test_server_paths_are_off_without_ingest_roots_and_tell_nothing(client):
    answers = [client.post("/api/ingest", json={"path": p}) for p in ("/etc/shadow", "/no/such/file.wav",
                                                                         str(SAMPLES / JFK))]
    assert {r.status_code for r in answers} == {403}
    assert len({r.text for r in answers}) == 1 and "--ingest-root" in answers[0].json()["detail"]


def test_server_paths_are_read_only_under_the_ingest_roots(tmp_path, embedder, clips_dir):
    secret = tmp_path / "secret"
    secret.mkdir()
    shutil.copy(SAMPLES / "librispeech-1995-1837-0001.wav", secret / "private.wav")
    (clips_dir / "sneaky.wav").symlink_to(secret / "private.wav")
    app = create_app(tmp_path / "lib", embedder.name, ServeOptions(ingest_roots=(clips_dir,)))
    with TestClient(app, base_url=BASE) as c:
        outside = [c.post("/api/ingest", json={"path": p}) for p in (str(secret / "private.wav"), str(secret / "none.wav"),
                                                                     f"{clips_dir}/../secret/private.wav", "private.wav")]
        assert {r.status_code for r in outside} == {403} and len({r.text for r in outside}) == 1
        assert c.post("/api/ingest", json={"path": str(clips_dir / "none.wav")}).status_code == 404
        r = c.post("/api/ingest", json={"path": str(clips_dir)})
        assert r.status_code == 202
        job = _wait(c, r.json())
        assert job["total"] == 3 and job["done"] == 3, job  # the files found, not the one path given
        by_name = {f["file"]: f for f in job["files"]}
        assert by_name["sneaky.wav"]["status"] == "failed" and "outside the ingest roots" in by_name["sneaky.wav"]["message"]
        assert {by_name[n]["status"] for n in ("librispeech-1272-128104-0000.wav", JFK)} == {"ingested"}
        files = {r["file"] for r in c.get("/api/recordings").json()["recordings"]}
    assert files == {"librispeech-1272-128104-0000.wav", JFK}


@pytest.mark.parametrize("q", ["\x13", "?!", "\u00ad"])
def test_a_query_with_nothing_to_look_for_is_422_not_a_server_error(client, q):
    """Found by schemathesis: an exact phrase of control characters was a 500."""
    for exact in ("true", "false"):
        r = client.get("/api/search", params={"q": q, "exact": exact})
        assert r.status_code in (200, 422) and (r.status_code == 200 or "look for" in r.json()["detail"]), r.text


def test_a_clip_past_the_end_is_400(client):
    jfk = next(r for r in client.get("/api/recordings").json()["recordings"] if r["file"] == JFK)
    r = client.get(f"/api/recordings/{jfk['id']}/clip", params={"start": 0, "end": 1e9})
    assert r.status_code == 400 and "past its end" in r.json()["detail"]
    assert client.get(f"/api/recordings/{jfk['id']}/clip", params={"start": 0, "end": jfk["duration"]}).status_code == 200


def test_asks_past_the_queue_bound_get_503_with_retry_after_and_searches_go_on(sample_library, embedder):
    app = create_app(sample_library.root, embedder.name, ServeOptions(ask_queue=1))
    with TestClient(app, base_url=BASE) as c:
        st = app.state.earmark
        hold = threading.Event()
        st.answerer.submit(lambda lib, emb: hold.wait(120))  # the model is busy with something long
        first: dict = {}
        thread = threading.Thread(target=lambda: first.update(
            r=c.post("/api/ask", json={"question": "What did Kennedy ask Americans to do?"})))
        thread.start()
        deadline = time.monotonic() + 30
        while st.asks.pending < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = c.post("/api/ask", json={"question": "What did Kennedy ask?"})
        assert second.status_code == 503 and int(second.headers["retry-after"]) >= 1
        assert "busy" in second.json()["detail"]
        # Everything else is answered while the asks wait.
        assert c.get("/api/search", params={"q": "your country"}).json()["hits"]
        assert c.get("/api/recordings").status_code == 200
        hold.set()
        thread.join(300)
        events = [json.loads(x) for x in first["r"].text.splitlines() if x.strip()]
        assert events[-1]["event"] == "answer" and events[-1]["found"] is True
        assert st.asks.pending == 0


def test_an_ask_past_its_deadline_ends_with_an_error_event(sample_library, embedder):
    app = create_app(sample_library.root, embedder.name, ServeOptions(ask_timeout=0.0))
    with TestClient(app, base_url=BASE) as c:
        r = c.post("/api/ask", json={"question": "What did Kennedy ask Americans to do?"})
        events = [json.loads(x) for x in r.text.splitlines() if x.strip()]
        assert events == [{"event": "error", "detail": events[0]["detail"]}] and "no answer within" in events[0]["detail"]
        assert app.state.earmark.asks.pending == 0


def test_finished_jobs_are_forgotten_oldest_first():
    jobs = Jobs()
    running = jobs.add(IngestJob("running", ["x"], status="running"))
    for i in range(MAX_JOBS + 50):
        jobs.add(IngestJob(f"j{i}", ["x"], status="done"))
    assert len(jobs) == MAX_JOBS + 1 and jobs.get("running") is running
    assert jobs.get("j0") is None and jobs.get(f"j{MAX_JOBS + 49}") is not None


def test_an_upload_that_fails_leaves_nothing_and_one_upload_at_a_time_per_request(tmp_path, embedder):
    with TestClient(create_app(tmp_path / "lib", embedder.name), base_url=BASE) as c:
        r = c.post("/api/ingest", files={"file": ("noise.wav", os.urandom(4000), "audio/wav")})
        job = _wait(c, r.json())
        assert job["status"] == "failed" and job["files"][0]["status"] == "failed"
        assert not (tmp_path / "lib" / "uploads" / job["job"]).exists()
        two = c.post("/api/ingest", files=[("file", ("a.wav", b"RIFF", "audio/wav")), ("file", ("b.wav", b"RIFF", "audio/wav"))])
        assert two.status_code == 400
    assert not [p for p in (tmp_path / "lib" / "uploads").iterdir()]


def test_on_start_a_half_written_upload_is_cleared_and_a_whole_one_is_ingested(tmp_path, embedder):
    uploads = tmp_path / "lib" / "uploads"
    (uploads / ".partial-aaaa").mkdir(parents=True)
    (uploads / ".partial-aaaa" / "cut.wav").write_bytes(b"RIFF....")
    (uploads / "bbbb").mkdir()
    shutil.copy(SAMPLES / "librispeech-1272-128104-0000.wav", uploads / "bbbb" / "quilter.wav")
    with TestClient(create_app(tmp_path / "lib", embedder.name), base_url=BASE) as c:
        job = _wait(c, {"job": "bbbb", "status": "queued"})
        assert job["status"] == "done" and job["files"][0]["status"] == "ingested"
        assert [r["file"] for r in c.get("/api/recordings").json()["recordings"]] == ["quilter.wav"]
    assert sorted(p.name for p in uploads.iterdir()) == ["bbbb"]


def test_on_start_an_upload_left_transcribed_by_a_kill_is_indexed(tmp_path, embedder):
    """Found by the crash suite: a server killed while indexing an upload left its recording
    'transcribed', and the restarted server took the catalog row for a finished ingest."""
    uploads = tmp_path / "lib" / "uploads" / "cccc"
    uploads.mkdir(parents=True)
    shutil.copy(SAMPLES / "librispeech-1272-128104-0000.wav", uploads / "quilter.wav")
    with TestClient(create_app(tmp_path / "lib", embedder.name), base_url=BASE) as c:
        assert _wait(c, {"job": "cccc", "status": "queued"})["status"] == "done"
    from pipeline.store import Library

    lib = Library(tmp_path / "lib", embedder.name)
    sha = lib.recordings()[0].sha256
    lib.set_status(sha, "transcribed")  # as a kill between the transcript and the index leaves it
    lib.close()
    with TestClient(create_app(tmp_path / "lib", embedder.name), base_url=BASE) as c:
        job = _wait(c, {"job": "cccc", "status": "queued"})
        assert job["status"] == "done", job
        assert [r["status"] for r in c.get("/api/recordings").json()["recordings"]] == ["indexed"]


def test_sigterm_during_an_upload_ingest_stops_the_server_cleanly_and_the_upload_resumes(tmp_path):
    """A real `earmark serve`: SIGTERM while it ingests a minute of meeting stops it without a
    traceback (no worker left finishing the file), no token reaches its log, and the next start
    ingests the upload it had received."""
    import httpx

    from earmark_eval.reliability.server import Server

    meeting = REAL / "ami-meeting-excerpt-4spk-60s.wav"
    if not meeting.exists():
        pytest.skip("the shared recordings are not beside the checkout")
    token, lib, log = "t0ken-" + os.urandom(8).hex(), tmp_path / "lib", tmp_path / "serve.log"
    auth = {"Authorization": f"Bearer {token}"}
    earmark = (str(Path(sys.executable).with_name("earmark")),)
    with Server(earmark, lib, log, env={"EARMARK_TOKEN": token}) as server:
        r = httpx.post(f"{server.url}/api/ingest", headers=auth, timeout=60,
                       files={"file": ("meeting.wav", meeting.read_bytes(), "audio/wav")})
        assert r.status_code == 202, r.text
        job = r.json()["job"]
        while httpx.get(f"{server.url}/api/ingest/{job}", headers=auth).json()["status"] == "queued":
            time.sleep(0.2)
        time.sleep(2)  # into the transcription
        assert server.stop() < 60  # SIGTERM; past a minute it is killed, and this fails
    text = log.read_text()
    assert "Traceback" not in text and "BrokenProcessPool" not in text and token not in text, text
    with Server(earmark, lib, log, env={"EARMARK_TOKEN": token}) as server:
        deadline = time.monotonic() + 300
        while True:
            recs = httpx.get(f"{server.url}/api/recordings", headers=auth).json()["recordings"]
            if [r["status"] for r in recs] == ["indexed"]:
                break
            assert time.monotonic() < deadline, recs
            time.sleep(1)
        assert [r["file"] for r in recs] == ["meeting.wav"]
    text = log.read_text()
    assert token not in text and "Traceback" not in text, text
