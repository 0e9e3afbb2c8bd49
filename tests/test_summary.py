"""Summaries and chapters: chapter boundaries where the talk turns, every shown sentence borne out by
the transcript it cites, kept in the library, redactions respected, through the CLI, the API and export."""

from __future__ import annotations

import json
import subprocess
import time

import numpy as np
import pytest

from pipeline import chapters, summary, verify
from pipeline.config import AnswerOptions, SummaryOptions
from pipeline.records import during
from pipeline.sentences import Span

from .conftest import SAMPLES, real

JOIN_GAP = 2.0  # seconds of silence between the two recordings of the stitched file: shorter than a pause


def _spans(times: list[tuple[float, float]]) -> list[Span]:
    return [Span(a, b, f"sentence {i}") for i, (a, b) in enumerate(times)]


def test_a_turn_in_the_talk_starts_a_chapter():
    # Two topics of six sentences each (4 s apiece, 1 s apart): the vectors change at the seventh.
    spans = _spans([(5 * i, 5 * i + 4) for i in range(12)])
    a, b = np.eye(8)[0], np.eye(8)[1]
    rng = np.random.default_rng(0)
    vecs = np.array([(a if i < 6 else b) + 0.05 * rng.standard_normal(8) for i in range(12)])
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    parts = chapters.split(spans, vecs, SummaryOptions(window=3, min_chapter=10))
    assert [p[0].start for p in parts] == [0, 30]


def test_a_long_silence_ends_a_chapter_and_no_chapter_is_shorter_than_the_minimum():
    # One topic throughout, but a 20 s silence after the fifth sentence.
    times = [(5 * i, 5 * i + 4) for i in range(5)] + [(44 + 5 * i, 48 + 5 * i) for i in range(5)]
    vecs = np.tile(np.eye(4)[0], (10, 1))
    assert [p[0].start for p in chapters.split(_spans(times), vecs, SummaryOptions(min_chapter=10))] == [0, 44]
    # The same silence, but the chapters it would make are shorter than the minimum: one chapter.
    assert len(chapters.split(_spans(times), vecs, SummaryOptions(min_chapter=30))) == 1


def test_a_point_its_sentence_does_not_bear_out_is_dropped():
    from pipeline.summary import _checked

    said = [Span(0.0, 4.0, "And so my fellow Americans, ask not what your country can do for you."),
            Span(4.5, 8.0, "Ask what you can do for your country.")]
    options = AnswerOptions()
    kept = _checked("Americans should ask what they can do for their country.", said, 1, 1, "h", "jfk.flac", options)
    assert kept is not None and kept.citations[0].start <= 4.5 and kept.citations[0].end >= 8.0
    # Every word there, but the "not" dropped: the opposite of what was said.
    assert _checked("Americans ask what your country can do for you.", said, 0, 1, "h", "jfk.flac", options) is None
    assert verify.negated(said[0].text) and verify.negated("They didn't.") and not verify.negated(said[1].text)
    # Words not there: dropped before any model reads it. Words there, meaning not: the model refuses it.
    assert _checked("Kennedy declared war on the Moon.", said, 1, 1, "h", "jfk.flac", options) is None
    mobile = [Span(0.0, 9.0, "I was thinking on the same lines you instead of having too many buttons and make it "
                             "complicated for the user Maybe have an LCD display or something like that like a mobile "
                             "phone people might find it easier to browse", "SPEAKER_6")]
    assert verify.supports("", "SPEAKER_6 says a mobile phone is too complicated.", mobile[0].attests)
    assert _checked("SPEAKER_6 says a mobile phone is too complicated.", mobile, 0, 1, "h", "ami.wav", options) is None


@pytest.fixture(scope="module")
def stitched(tmp_path_factory):
    """A sonnet read aloud (53 s), 2 s of silence, then a 4-speaker meeting (60 s), as one file."""
    folder = tmp_path_factory.mktemp("stitched")
    out = folder / "sonnet-then-meeting.wav"

    def sox(*args) -> None:
        subprocess.run(["sox", *map(str, args)], check=True)
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(real("librivox-shakespeare-sonnet001-en.mp3")),
                    "-ar", "16000", "-ac", "1", str(folder / "sonnet.wav")], check=True)  # (sox reads no mp3)
    sox(folder / "sonnet.wav", folder / "a.wav", "pad", "0", JOIN_GAP)
    sox(real("ami-meeting-excerpt-4spk-60s.wav"), "-r", "16000", "-c", "1", folder / "b.wav")
    sox(folder / "a.wav", folder / "b.wav", out)
    join = float(subprocess.run(["soxi", "-D", str(folder / "a.wav")], capture_output=True, text=True,
                                check=True).stdout)
    return out, join


@pytest.fixture(scope="module")
def summarized(tmp_path_factory, embedder, stitched):
    """A library of the stitched file and the JFK clip, each summarised once through the CLI's path."""
    from pipeline.ingest import ingest
    from pipeline.store import Library
    from pipeline.summary import summarize

    path, join = stitched
    lib = Library(tmp_path_factory.mktemp("summary-library"), embedder.name)
    report = ingest(lib, embedder, [path, SAMPLES / "jfk-inaugural-1961-excerpt.flac"])
    assert not report.failed, report.failed
    made = {r.path.name: summarize(lib, embedder, r.sha256) for r in report.results}
    return lib, made, join


def _borne_out(lib, sha: str, point: dict) -> bool:
    """Checked again from the stored transcript alone: the words spoken in the cited times, and Whisper's
    English rendering of them where it heard another language (a foreign sentence attests in either
    rendering, `Span.attests`; on an AVX2-only EPYC Whisper heard part of the meeting as Welsh)."""
    t = lib.transcript(sha)
    said = " ".join(f"{s.speaker or ''}: {s.text}" for c in point["citations"]
                    for s in during(t.segments + t.translations, c["start"], c["end"]))
    return verify.supports(summary.ASKED, point["text"], said)


def test_two_recordings_joined_give_chapters_that_part_where_they_join_each_sentence_borne_out(summarized):
    lib, made, join = summarized
    s = made["sonnet-then-meeting.wav"].to_json()
    starts = [c["start"] for c in s["chapters"]]
    assert len(starts) >= 2 and any(abs(t - join) <= 10 for t in starts[1:]), (starts, join)
    points = s["summary"] + [p for c in s["chapters"] for p in c["points"]]
    assert points, s  # the model wrote something the transcript bears out
    for p in points:
        assert p["citations"] and all(0 <= c["start"] < c["end"] <= 120 for c in p["citations"])
        assert _borne_out(lib, s["id"], p), p
    assert all(c["title"].strip() for c in s["chapters"])
    assert s["written"] >= len([p for c in s["chapters"] for p in c["points"]]) and 0 <= s["dropped"] <= s["written"]


def test_a_summary_is_kept_and_made_again_only_when_its_transcript_changes(summarized, monkeypatch):
    from pipeline import llm, summary
    from pipeline.export import record_redactions

    lib, made, _ = summarized
    jfk = made["jfk-inaugural-1961-excerpt.flac"]
    monkeypatch.setattr(llm, "reply_json", lambda *a, **k: pytest.fail("the kept summary was made again"))
    emb = _embedder(lib)
    assert summary.summarize(lib, emb, jfk.file_hash) == jfk
    monkeypatch.undo()
    # Redacting the recording changes what it says: the summary is made again, without the redacted words.
    record_redactions(lib.root, jfk.file_hash, [(0.0, 11.0)])
    again = summary.summarize(lib, emb, jfk.file_hash)
    text = json.dumps(again.to_json()).lower()
    assert "country" not in text and "americans" not in text, text
    assert summary.current(lib, jfk.file_hash) == again


def _embedder(lib):
    from pipeline.config import EmbedOptions
    from pipeline.embed import load

    return load(EmbedOptions(model=lib.embed_model))


def test_the_cli_prints_the_kept_summary_and_export_carries_it(summarized, run_cli, tmp_path):
    lib, made, _ = summarized
    name = "sonnet-then-meeting.wav"
    code, out, err = run_cli("--library", lib.root, "summary", name, "--json")
    assert code == 0, err
    assert json.loads(out) == made[name].to_json()
    code, out, err = run_cli("--library", lib.root, "summary", name)
    assert code == 0 and "chapters:" in out and f"[{name} @ " in out
    code, md, err = run_cli("--library", lib.root, "export", name, "--format", "md")
    assert code == 0 and "## Chapters" in md and made[name].chapters[0].title in md and "## Transcript" in md
    code, js, err = run_cli("--library", lib.root, "export", name, "--format", "json")
    assert json.loads(js)["summary"]["chapters"] == made[name].to_json()["chapters"]
    code, out, err = run_cli("--library", lib.root, "summary", "nothing-like-it.wav")
    assert code == 2 and "not in the library" in err


def test_the_web_api_makes_a_summary_and_serves_it(summarized, monkeypatch):
    from fastapi.testclient import TestClient

    from pipeline import summary
    from pipeline.web import create_app

    lib, made, _ = summarized
    jfk = made["jfk-inaugural-1961-excerpt.flac"]
    rid = jfk.file_hash
    summary.path(lib, rid).unlink(missing_ok=True)  # none kept: the page must ask for one
    digests, current = [], summary.current
    monkeypatch.setattr(summary, "current", lambda *a, **k: digests.append(1) or current(*a, **k))
    with TestClient(create_app(lib.root, lib.embed_model), base_url="http://127.0.0.1") as client:
        r = client.get(f"/api/recordings/{rid}/summary")
        assert r.status_code == 404 and "POST" in r.json()["detail"]
        assert client.post(f"/api/recordings/{rid}/summary", json={}).status_code == 202
        deadline, polls = time.monotonic() + 300, 0
        while (r := client.get(f"/api/recordings/{rid}/summary")).status_code == 202:
            assert time.monotonic() < deadline
            polls += 1
            time.sleep(0.5)
        assert r.status_code == 200, r.text
        # A poll while the summary is made reads nothing; the GETs before and after it read the kept one.
        assert len(digests) == 2, (len(digests), polls)
        body = r.json()
        assert body["status"] == "done" and body["id"] == rid and body["file"] == jfk.file
        assert client.get(f"/api/recordings/{'0' * 64}/summary").status_code == 404
        assert client.post(f"/api/recordings/{rid}/summary", content="{}",
                           headers={"content-type": "text/plain"}).status_code == 415


def test_ingest_summarize_prints_each_new_recordings_summary(run_cli, tmp_path):
    lib = tmp_path / "lib"
    code, out, err = run_cli("--library", lib, "ingest", "--summarize", SAMPLES / "jfk-inaugural-1961-excerpt.flac")
    assert code == 0, err
    assert "1 ingested" in out and "chapters:" in out and "[jfk-inaugural-1961-excerpt.flac @ 00:" in out
    assert len(list((lib / "summaries").glob("*.json"))) == 1


def test_a_reply_cut_off_before_its_json_ends_leaves_that_chapter_without_points(monkeypatch):
    # The model's wording is beside the point: what a summary does with a reply that is not JSON is.
    from pipeline import llm, summary
    from pipeline.errors import ModelReplyError
    from pipeline.records import Segment, Transcript, Word

    def cut(*a, **k):
        raise ModelReplyError("the model did not return JSON: '{\"title\": \"Speech about\", \"points\": [{'")
    monkeypatch.setattr(llm, "reply_json", cut)
    words = tuple(Word(0.5 + 0.4 * i, 0.8 + 0.4 * i, f" {w}", 0.9) for i, w in enumerate("The ship sailed at dawn.".split()))
    t = Transcript("h", "ship.wav", 3.0, (Segment(0, 0.5, 2.5, "The ship sailed at dawn.", words, "en", -0.2, 0.0, 1.0),),
                   {}, "2026-12-07T00:00:00+00:00")

    class Flat:
        name = "flat"

        def embed(self, texts):
            return np.ones((len(texts), 4), dtype=np.float32) / 2
    s = summary._make(t, "ship.wav", Flat(), SummaryOptions(), AnswerOptions())
    assert len(s.chapters) == 1 and s.chapters[0].points == () and s.summary == ()
    assert s.chapters[0].title == "\u201cThe ship sailed at dawn.\u201d" and s.titles_quoted == 1
