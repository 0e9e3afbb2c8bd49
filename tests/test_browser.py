"""The page in a real browser: Debian's headless Chromium, driven by Playwright, against `earmark serve`
running on a loopback port with the sample library. Nothing outside 127.0.0.1 is contacted."""

from __future__ import annotations

import os
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

import pytest

from earmark_eval.reliability.server import free_port

from .media import SPEECH_AT, video

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
QUESTION = "What did Kennedy ask Americans to do?"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent (apt-get install chromium)")

# The flags that keep Chromium from reaching for Google's hosts on a closed network, plus autoplay
# without a gesture (the chip click is one, but playback must not hinge on it).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required"]



@contextmanager
def _serving(app, port: int | None = None):
    """The app under uvicorn on a loopback port (default: a free one), in a thread; yields its base URL."""
    import uvicorn

    port = port or free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def server(sample_library, embedder):
    """`earmark serve` over the sample library; yields its base URL."""
    from pipeline.web import create_app

    with _serving(create_app(sample_library.root, embedder.name)) as url:
        yield url


@pytest.fixture
def page(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        # Playwright gives each launch a fresh, empty profile (it refuses --user-data-dir in args).
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        context = browser.new_context(viewport={"width": 1280, "height": 820})
        # Only loopback: any other request is aborted before it leaves the browser.
        context.route("**/*", lambda route: route.continue_()
                      if urlparse(route.request.url).hostname == "127.0.0.1" else route.abort())
        yield context.new_page()
        browser.close()


def test_ask_then_play_the_cited_second(server, page, tmp_path):
    page.goto(server)
    page.fill("#q", QUESTION)
    page.click("#ask-form button[type=submit]")
    chip = page.locator("#citations .chip").first
    chip.wait_for(timeout=120_000)
    assert "jfk-inaugural-1961-excerpt.flac @" in chip.inner_text()
    assert "country" in page.inner_text("#answer").lower() + page.inner_text("#citations").lower()
    cited_start = page.evaluate("""() => {
        const [m, s] = document.querySelector('#citations .chip').textContent.split('@ ')[1].split(':');
        return 60 * +m + +s; }""")

    page.evaluate("document.getElementById('player').muted = true")
    chip.click()
    page.wait_for_function("() => { const a = document.getElementById('player'); "
                           "return !a.paused && a.currentTime > 0 && a.readyState >= 2; }", timeout=30_000)
    first = page.evaluate("document.getElementById('player').currentTime")
    page.wait_for_timeout(800)
    later, paused = page.evaluate("[document.getElementById('player').currentTime, document.getElementById('player').paused]")
    assert not paused and later > first, (first, later)
    assert abs(first - cited_start) <= 1.0, (first, cited_start)

    cited = page.locator("#transcript .line.cited")
    assert cited.count() >= 1 and "country" in cited.first.inner_text().lower()
    assert page.locator("#hits .hit").count() >= 1

    # A transcript line plays from its own start: the last line of the speech begins seconds in.
    line = page.locator("#transcript .line").last
    line_start = page.evaluate("(t) => { const [m, s] = t.split(':'); return 60 * +m + +s; }",
                               line.locator("time").inner_text())
    assert line_start >= 5
    line.click()
    page.wait_for_function(f"() => {{ const a = document.getElementById('player'); "
                           f"return !a.paused && a.currentTime >= {line_start} - 1; }}", timeout=30_000)
    now = page.evaluate("document.getElementById('player').currentTime")
    assert line_start - 1 <= now <= line_start + 1.5, (now, line_start)
    page.locator("#citations .chip").first.click()  # back to the cited second for the screenshot
    page.wait_for_function(f"() => document.getElementById('player').currentTime < {cited_start} + 1.5")

    shot = tmp_path / "earmark-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000  # a rendered page, not an empty image
    if os.environ.get("EARMARK_UPDATE_SCREENSHOT"):  # the README's picture; a test run leaves the checkout alone
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copy(shot, ROOT / "docs" / "screenshot.png")


def test_a_video_dropped_in_a_watched_folder_shows_up_and_plays_at_the_cited_second(tmp_path, embedder, page):
    """`serve --watch`: the library view lists a recording that arrived by itself; its citation plays
    the video, picture and all, from the cited second."""
    from pipeline.config import ServeOptions
    from pipeline.web import create_app

    folder = tmp_path / "inbox"
    folder.mkdir()
    app = create_app(tmp_path / "watched-library", embedder.name, replace(ServeOptions(), watch=(folder,)))
    with _serving(app) as url:
        page.goto(url)
        page.click("#tab-library")
        video(folder / "harbour talk.webm")  # written in place by ffmpeg: the watcher waits until it is whole
        page.locator("#recordings tr", has_text="harbour talk.webm").filter(has_text="indexed").wait_for(
            timeout=180_000)

        page.click("#tab-ask")
        page.fill("#q", "How many ships did the harbour master count?")
        page.click("#ask-form button[type=submit]")
        chip = page.locator("#citations .chip").first
        chip.wait_for(timeout=180_000)
        assert chip.inner_text().startswith("harbour talk.webm @ 00:0")
        assert "12" in page.inner_text("#answer") or "twelve" in page.inner_text("#answer").lower()
        page.evaluate("document.getElementById('player').muted = true")
        chip.click()
        page.wait_for_function("() => { const v = document.getElementById('player'); "
                               "return !v.paused && v.readyState >= 2 && v.videoWidth > 0; }", timeout=30_000)
        width, shown, now = page.evaluate("""() => { const v = document.getElementById('player');
            return [v.videoWidth, v.classList.contains('picture'), v.currentTime]; }""")
        assert width == 160 and shown  # the picture is shown, at the test pattern's size
        assert abs(now - SPEECH_AT) <= 1.5, now


def test_a_recordings_summary_is_made_from_the_page_and_its_citations_play(tmp_path, embedder, page):
    """The transcript view's "Summary and chapters": the server makes it, the page shows chapters whose
    cited times play the recording from there."""
    from pipeline.ingest import ingest
    from pipeline.store import Library
    from pipeline.web import create_app

    lib = Library(tmp_path / "summary-library", embedder.name)
    assert not ingest(lib, embedder, [ROOT / "samples" / "jfk-inaugural-1961-excerpt.flac"]).failed
    lib.close()
    with _serving(create_app(tmp_path / "summary-library", embedder.name)) as url:
        page.goto(url)
        page.click("#tab-library")
        page.locator("#recordings tr", has_text="jfk-inaugural-1961-excerpt.flac").click()
        page.locator("#summary-button").click()
        page.locator("#summary h4.chapter").first.wait_for(timeout=300_000)
        assert page.locator("#summary-state").inner_text() == ""
        chips = page.locator("#summary li.point .chip")
        assert chips.count() >= 1, page.inner_text("#summary")
        start = page.evaluate("(t) => { const [m, s] = t.split('–')[0].split(':'); return 60 * +m + +s; }",
                              chips.last.inner_text())
        page.evaluate("document.getElementById('player').muted = true")
        chips.last.click()
        page.wait_for_function("() => { const a = document.getElementById('player'); "
                               "return !a.paused && a.readyState >= 2; }", timeout=30_000)
        assert abs(page.evaluate("document.getElementById('player').currentTime") - start) <= 1.5
        assert page.locator("#transcript .line.cited").count() >= 1
