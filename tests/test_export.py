"""Evidence out of the library through the real `earmark` entry point: subtitle and text exports, sample-exact
clips with manifests, redacted copies, and speaker renaming that reaches search and exports."""

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from .conftest import real

CALL = "call.wav"


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def call_library(tmp_path_factory, embedder):
    """The phone call (speakers Diane and Sheila from its .stm) ingested once; tests copy it before changing it."""
    from pipeline.ingest import ingest
    from pipeline.store import Library

    d = tmp_path_factory.mktemp("call")
    shutil.copy(real("pyannote-sample-phonecall-2spk.wav"), d / CALL)
    shutil.copy(real("pyannote-sample-phonecall-2spk.stm"), d / "call.stm")
    lib = Library(d / "library", embedder.name)
    report = ingest(lib, embedder, [d / CALL])
    assert not report.failed, report.failed
    lib.close()
    return d / "library"


@pytest.fixture
def own_copy(call_library, tmp_path):
    """A copy of the call's catalog and transcripts (no passage index), for tests that record things in it."""
    dest = tmp_path / "call-library"
    shutil.copytree(call_library, dest, ignore=shutil.ignore_patterns("chroma"))
    return dest


def _original(library: Path) -> Path:
    """The call as ingested into the module's library (the catalog's recorded path)."""
    return library.parent / CALL


def test_srt_vtt_txt_and_json_carry_speakers_and_times(run_cli, call_library, tmp_path):
    import srt
    import webvtt

    lib = ("--library", call_library)
    code, out, _ = run_cli(*lib, "export", CALL, "--format", "srt")
    assert code == 0
    subs = list(srt.parse(out))
    assert len(subs) >= 8 and all(re.match(r"(Diane|Sheila): \S", s.content) for s in subs)
    chicago = [s for s in subs if "Chicago" in s.content]
    assert chicago[0].content.startswith("Sheila: ") and 13.5 <= chicago[0].start.total_seconds() <= 15.5

    code, out, _ = run_cli(*lib, "export", CALL, "--format", "vtt", "-o", tmp_path / "call.vtt")
    assert code == 0
    captions = webvtt.read(str(tmp_path / "call.vtt")).captions
    assert len(captions) == len(subs)
    cue = next(c for c in captions if "Chicago" in c.text)
    assert cue.text.startswith("Sheila: ")
    assert abs(cue.start_time.in_milliseconds() / 1000 - chicago[0].start.total_seconds()) <= 0.001
    assert re.search(r"<00:00:1\d\.\d{3}>", cue.raw_text), "word times as cue timestamps"

    code, out, _ = run_cli(*lib, "export", CALL, "--format", "txt")
    lines = out.splitlines()
    assert len(lines) == len(subs) and all(re.match(r"\[\d\d:\d\d–\d\d:\d\d\] (Diane|Sheila): \S", x) for x in lines)
    assert any(x.startswith("[00:14–00:1") and "Sheila: " in x and "Chicago" in x for x in lines)

    code, out, _ = run_cli(*lib, "export", CALL, "--format", "json")
    assert json.loads(out) == json.loads(run_cli(*lib, "transcript", CALL, "--json")[1])
    assert any(w["start"] > 0 for s in json.loads(out)["segments"] for w in s["words"])

    entries = [json.loads(x) for x in (call_library / "audit.jsonl").read_text().splitlines()]
    assert any(e["event"] == "export" and e["format"] == "vtt" and e["output_sha256"] == _sha(tmp_path / "call.vtt")
               for e in entries)


def test_clip_is_sample_exact_with_a_manifest_that_checks_out(run_cli, call_library, tmp_path):
    out = tmp_path / "sheila.wav"
    code, _, _ = run_cli("--library", call_library, "clip", CALL, "14.4", "00:17.8", "-o", out)
    assert code == 0
    original, rate = sf.read(_original(call_library), dtype="int16")
    clip, clip_rate = sf.read(out, dtype="int16")
    assert clip_rate == rate and np.array_equal(clip, original[round(14.4 * rate):round(17.8 * rate)])
    m = json.loads((tmp_path / "sheila.wav.json").read_text())
    assert m["source_file"] == CALL and m["source_sha256"] == _sha(_original(call_library))
    assert m["clip_sha256"] == _sha(out) and (m["start"], m["end"]) == (14.4, 17.8)
    assert any(s["speaker"] == "Sheila" and "Chicago" in s["text"] and s["start"] < 17.8 and s["end"] > 14.4
               for s in m["segments"])
    assert "Chicago" in m["text"] and m["transcript_model"]["name"] == "base"
    assert m["earmark_version"] and m["exported_at"].startswith("20")
    # The same span cut again is the same bytes; mp3 is encoded once at the source's rate.
    run_cli("--library", call_library, "clip", CALL, "14.4", "17.8", "-o", tmp_path / "again.wav")
    assert _sha(tmp_path / "again.wav") == _sha(out)
    code, _, _ = run_cli("--library", call_library, "clip", CALL, "00:14", "00:18", "-o", tmp_path / "s.mp3")
    info = sf.info(tmp_path / "s.mp3")
    assert code == 0 and info.samplerate == rate and abs(info.duration - 4.0) < 0.1
    code, _, err = run_cli("--library", call_library, "clip", CALL, "45", "50", "-o", tmp_path / "x.wav")
    assert code == 2 and "past its end" in err


def test_clip_of_a_stereo_24_bit_flac_keeps_rate_channels_and_samples(run_cli, clips_dir, tmp_path):
    flac = clips_dir / "jfk-inaugural-1961-excerpt.flac"
    run_cli("-q", "ingest", flac)
    code, _, _ = run_cli("clip", flac.name, "1.5", "3", "-o", tmp_path / "jfk.wav")
    assert code == 0
    original, rate = sf.read(flac, dtype="int32")
    clip, clip_rate = sf.read(tmp_path / "jfk.wav", dtype="int32")
    assert (clip_rate, clip.shape[1], sf.info(tmp_path / "jfk.wav").subtype) == (rate, 2, "PCM_24")
    assert np.array_equal(clip, original[round(1.5 * rate):3 * rate])


def test_redacted_copy_is_silent_in_the_ranges_and_unchanged_elsewhere(run_cli, call_library, own_copy, tmp_path):
    source = _original(call_library)
    before = _sha(source)
    out = tmp_path / "redacted.wav"
    code, _, _ = run_cli("--library", own_copy, "redact", CALL, "--ranges", "12.5-14.0,20-22", "-o", out)
    assert code == 0 and _sha(source) == before
    original, rate = sf.read(source)
    redacted, _ = sf.read(out)
    inside = np.zeros(len(original), bool)
    for a, b in [(12.5, 14.0), (20, 22)]:
        inside[round(a * rate):round(b * rate)] = True
        assert np.sqrt(np.mean(redacted[round(a * rate):round(b * rate)] ** 2)) < 1e-4
    assert np.sqrt(np.mean(original[inside] ** 2)) > 0.01  # there was speech to remove
    assert len(redacted) == len(original) and np.allclose(redacted[~inside], original[~inside], atol=1e-4)

    text = (tmp_path / "redacted.wav.transcript.txt").read_text()
    assert "Diane: [redacted]" in text and "This is Diane" not in text and "Chicago" in text
    words = [w for s in json.loads((tmp_path / "redacted.wav.transcript.json").read_text())["segments"]
             for w in s["words"]]
    assert not [w for w in words if w["text"].strip() != "[redacted]" and w["end"] > 12.5 and w["start"] < 14.0]
    m = json.loads((tmp_path / "redacted.wav.json").read_text())
    assert m["ranges"] == [[12.5, 14.0], [20.0, 22.0]] and m["source_sha256"] == before
    assert m["output_sha256"] == _sha(out) and m["fill"] == "silence"
    # Once redacted, every export of the recording says so.
    code, out_txt, _ = run_cli("--library", own_copy, "export", CALL, "--format", "srt")
    assert "Diane: [redacted]" in out_txt and "This is Diane" not in out_txt

    code, _, _ = run_cli("--library", own_copy, "redact", CALL, "--ranges", "12.5-14", "-o", tmp_path / "t.wav",
                         "--tone")
    toned, _ = sf.read(tmp_path / "t.wav")
    span = toned[round(12.5 * rate):round(14.0 * rate)]
    assert code == 0 and np.fft.rfftfreq(len(span), 1 / rate)[np.argmax(np.abs(np.fft.rfft(span)))] == \
        pytest.approx(1000, abs=2)
    assert _sha(source) == before


def test_speakers_rename_versions_the_transcript_and_reaches_search_and_exports(run_cli, tmp_path):
    call = tmp_path / CALL
    shutil.copy(real("pyannote-sample-phonecall-2spk.wav"), call)
    code, _, _ = run_cli("-q", "ingest", call, "--speakers", real("pyannote-sample-phonecall-2spk.rttm"))
    assert code == 0
    code, out, _ = run_cli("speakers", "list", CALL, "--json")
    assert {s["speaker"] for s in json.loads(out)["speakers"]} == {"speaker90", "speaker91"}
    code, out, _ = run_cli("speakers", "rename", CALL, "speaker91", "Sheila")
    assert code == 0 and "speaker91 → Sheila" in out
    code, out, _ = run_cli("speakers", "list", CALL)
    assert "Sheila" in out and "speaker91" not in out and "speaker90" in out

    code, out, _ = run_cli("search", "Texas Chicago", "--mode", "lexical", "--json")
    assert "Sheila: " in json.loads(out)["hits"][0]["text"] and "speaker91" not in out
    code, out, _ = run_cli("search", "Texas Chicago", "--mode", "dense", "--json")
    assert "Sheila: " in json.loads(out)["hits"][0]["text"]
    code, out, _ = run_cli("export", CALL, "--format", "txt")
    assert re.search(r"Sheila: .*Chicago", out) and "speaker91" not in out

    transcripts = tmp_path / "library" / "transcripts"
    versions = [json.loads(p.read_text()) for p in transcripts.glob("*.json")]
    assert len(versions) == 2 and {s["speaker"] for v in versions for s in v["segments"]} >= {"speaker91", "Sheila"}
    entries = [json.loads(x) for x in (tmp_path / "library" / "audit.jsonl").read_text().splitlines()]
    assert [(e["old"], e["new"]) for e in entries if e["event"] == "rename_speaker"] == [("speaker91", "Sheila")]

    code, _, err = run_cli("speakers", "rename", CALL, "speaker7", "Bob")
    assert code == 2 and "no speaker 'speaker7'" in err and "speaker90, Sheila" in err


def test_ask_clips_writes_a_clip_and_manifest_per_citation(run_cli, call_library, tmp_path):
    folder = tmp_path / "evidence"
    code, out, err = run_cli("--library", call_library, "ask", "Which of the two callers is in Texas?",
                             "--clips", folder, "--json")
    answer = json.loads(out)
    assert code == 0 and answer["found"], answer
    clips = sorted(folder.glob("*.wav"))
    assert len(clips) == len(answer["citations"]) >= 1
    cited, m = answer["citations"][0], json.loads(clips[0].with_name(clips[0].name + ".json").read_text())
    assert m["citation"] == cited and m["question"] == answer["question"] and m["clip_sha256"] == _sha(clips[0])
    assert m["start"] <= cited["start"] < cited["end"] <= m["end"] and m["source_sha256"] == _sha(
        _original(call_library))
    assert any(s["speaker"] == "Sheila" for s in m["segments"])
    assert sf.info(clips[0]).duration == pytest.approx(m["end"] - m["start"], abs=1e-3)
