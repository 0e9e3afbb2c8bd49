"""Ingest through the real `earmark` entry point: skip by content, bad files, resume."""

import json
import shutil

import pytest

from pipeline import ingest as ingest_mod

from .conftest import SAMPLES


def _status(run_cli):
    code, out, _ = run_cli("status", "--json")
    assert code == 0
    return json.loads(out)


def test_ingesting_the_same_folder_twice_adds_nothing(run_cli, clips_dir):
    code, out, _ = run_cli("-q", "ingest", clips_dir)
    assert code == 0 and "2 ingested, 0 skipped, 0 failed" in out
    first = _status(run_cli)
    code, out, _ = run_cli("-q", "ingest", clips_dir)
    assert code == 0 and "0 ingested, 2 skipped, 0 failed" in out
    assert _status(run_cli) == first
    assert first["files"] == 2 and first["passages"] >= 2 and first["hours"] == pytest.approx(16.86 / 3600, abs=2e-4)


def test_renamed_copy_is_recognised_by_hash(run_cli, clips_dir, tmp_path):
    run_cli("-q", "ingest", clips_dir)
    copy = tmp_path / "renamed-speech.flac"
    shutil.copy(clips_dir / "jfk-inaugural-1961-excerpt.flac", copy)
    code, out, _ = run_cli("-q", "ingest", copy)
    assert code == 0 and "as jfk-inaugural-1961-excerpt.flac (same content)" in out
    assert _status(run_cli)["files"] == 2


def test_broken_files_are_reported_and_the_rest_ingested(run_cli, clips_dir):
    (clips_dir / "empty.wav").write_bytes(b"")
    (clips_dir / "notes.mp3").write_text("not audio at all\n" * 50)
    (clips_dir / "readme.txt").write_text("a sidecar that is not audio and is not looked at")
    code, out, err = run_cli("-q", "ingest", clips_dir)
    assert code == 1
    assert "empty.wav: empty file" in err and "notes.mp3: not decodable audio" in err
    assert "readme.txt" not in err + out
    assert "2 ingested, 0 skipped, 2 failed" in out
    assert {r["file"] for r in _status(run_cli)["recordings"]} == {
        "jfk-inaugural-1961-excerpt.flac", "librispeech-1272-128104-0000.wav"}


def test_interrupted_ingest_resumes_without_retranscribing(run_cli, clips_dir, monkeypatch):
    calls = []
    real_index = ingest_mod.index_transcript

    def crash_while_indexing(*args, **kwargs):
        calls.append(1)
        raise KeyboardInterrupt  # the user pressed ^C after transcription was saved

    monkeypatch.setattr(ingest_mod, "index_transcript", crash_while_indexing)
    code, _, _ = run_cli("-q", "ingest", clips_dir / "jfk-inaugural-1961-excerpt.flac")
    assert code == 130 and calls  # ^C exits like any interrupted command
    assert _status(run_cli)["recordings"][0]["status"] == "transcribed"

    # On resume, transcription must not run again: only indexing is left to do.
    monkeypatch.setattr(ingest_mod, "index_transcript", real_index)
    monkeypatch.setattr(ingest_mod, "transcribe_piece", lambda *a, **k: pytest.fail("re-transcribed"))
    code, out, _ = run_cli("-q", "ingest", clips_dir / "jfk-inaugural-1961-excerpt.flac")
    assert code == 0 and "1 ingested" in out
    assert _status(run_cli)["recordings"][0]["status"] == "indexed"


def test_transcript_command_prints_timestamped_lines(run_cli):
    run_cli("-q", "ingest", SAMPLES / "jfk-inaugural-1961-excerpt.flac")
    code, out, _ = run_cli("transcript", "jfk-inaugural-1961-excerpt.flac")
    assert code == 0 and out.startswith("[00:00–") and "ask not what your country" in out
    code, out, _ = run_cli("transcript", "jfk-inaugural-1961-excerpt.flac", "--json")
    data = json.loads(out)
    assert data["file_name"] == "jfk-inaugural-1961-excerpt.flac" and data["model"]["name"] == "base"
    seg = data["segments"][0]
    assert {"start", "end", "text", "words", "language", "avg_logprob", "no_speech_prob", "compression_ratio"} <= set(seg)


def test_unknown_recording_is_a_one_line_error(run_cli):
    code, _, err = run_cli("transcript", "nothing-like-this.wav")
    assert code == 2 and err.count("\n") == 1 and "not in the library" in err


@pytest.mark.parametrize("name, value, kind", [("EARMARK_BEAM_SIZE", "five", "a whole number"),
                                               ("EARMARK_FOREIGN_BEAM_SIZE", "5.0", "a whole number"),
                                               ("EARMARK_THREADS", "2.5", "a whole number"),
                                               ("EARMARK_MIN_RELEVANCE", "high", "a number")])
def test_a_malformed_numeric_setting_is_a_one_line_error(name, value, kind, tmp_path):
    """Settings are read as the options are defined, on import, before the CLI's error handling runs."""
    import os
    import subprocess
    import sys

    env = {**os.environ, name: value, "EARMARK_LIBRARY": str(tmp_path / "lib"), "EARMARK_MALLOC": "system"}
    run = subprocess.run([sys.executable, "-m", "pipeline", "status"], env=env, capture_output=True, text=True)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr == f"earmark: {name}={value!r} is not {kind}: set it to one, or unset it\n"


@pytest.mark.parametrize("name, value, command", [
    ("EARMARK_TRANSLATE", "maybe", ["status"]), ("EARMARK_LLM_TRANSLATE", "nope", ["status"]),
    ("EARMARK_DIARIZE", "sometimes", ["ingest", "nothing.wav"]), ("EARMARK_AUDIT_QUESTIONS", "y", ["ask", "Who?"])])
def test_a_malformed_on_off_setting_is_a_one_line_error(name, value, command, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, name: value, "EARMARK_LIBRARY": str(tmp_path / "lib"), "EARMARK_MALLOC": "system"}
    run = subprocess.run([sys.executable, "-m", "pipeline", *command], env=env, capture_output=True, text=True)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr == f"earmark: {name}={value!r} is not on or off: set it to 1 or 0, or unset it\n"


def test_on_off_settings_take_the_usual_spellings(monkeypatch):
    """Each switch once took its own spellings: EARMARK_LLM_TRANSLATE=false left the renderings on."""
    from pipeline.config import env_switch

    for value, on in [("1", True), ("Yes", True), ("on", True), ("TRUE", True),
                      ("0", False), ("false", False), ("No", False), ("off", False)]:
        monkeypatch.setenv("EARMARK_LLM_TRANSLATE", value)
        assert env_switch("EARMARK_LLM_TRANSLATE", not on) is on
    monkeypatch.setenv("EARMARK_LLM_TRANSLATE", " ")
    assert env_switch("EARMARK_LLM_TRANSLATE", True) is True and env_switch("EARMARK_LLM_TRANSLATE", None) is None


def test_two_jobs_transcribe_in_worker_processes_with_the_same_result(run_cli, clips_dir, tmp_path, monkeypatch):
    # Workers are spawned with modules of their own: only a transcription in this process would fail.
    monkeypatch.setattr(ingest_mod, "transcribe_piece", lambda *a, **k: pytest.fail("transcribed in the parent"))
    code, out, _ = run_cli("-q", "ingest", "--jobs", "2", clips_dir)
    assert code == 0 and "2 ingested, 0 skipped, 0 failed" in out
    parallel = _status(run_cli)
    monkeypatch.undo()
    # The same files ingested one at a time in this process give the same library.
    monkeypatch.setenv("EARMARK_LIBRARY", str(tmp_path / "serial"))
    code, out, _ = run_cli("-q", "ingest", "--jobs", "1", clips_dir)
    assert code == 0 and "2 ingested" in out
    serial = _status(run_cli)
    assert [(r["file"], r["passages"], r["duration"]) for r in parallel["recordings"]] == \
        [(r["file"], r["passages"], r["duration"]) for r in serial["recordings"]]


@pytest.mark.parametrize("env, flag, beams", [({}, [], "1 5"),
                                              ({"EARMARK_BEAM_SIZE": "3"}, [], "3 3"),
                                              ({"EARMARK_BEAM_SIZE": "3"}, ["--beam-size", "2"], "2 2"),
                                              ({"EARMARK_FOREIGN_BEAM_SIZE": "1"}, [], "1 1")])
def test_the_beam_set_in_the_environment_reaches_ingest_unless_the_flag_says_otherwise(env, flag, beams, tmp_path):
    """Beam widths (English, German) the ingest command decodes with. The flag's absence once replaced
    the environment's EARMARK_BEAM_SIZE with greedy decoding."""
    import os
    import subprocess
    import sys

    show = ("import sys, pipeline.ingest as i\n"
            "def shown(lib, embedder, files, options, **kw):\n"
            "    print(options.transcribe.beam('en'), options.transcribe.beam('de'))\n"
            "    sys.exit(0)\n"
            "i.ingest = shown\n"
            "from pipeline.cli import cli\n"
            "cli(sys.argv[1:])\n")
    base = {k: v for k, v in os.environ.items() if not k.endswith("BEAM_SIZE")}
    run = subprocess.run([sys.executable, "-c", show, "-q", "--library", str(tmp_path / "lib"), "ingest", *flag,
                          str(SAMPLES / "jfk-inaugural-1961-excerpt.flac")],
                         env={**base, **env, "EARMARK_MALLOC": "system"}, capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout == f"{beams}\n", run.stderr
