"""Video files, made here by ffmpeg (a test pattern with espeak-ng speech), ingested from their audio
track through the command line and searched and asked at the second the words are spoken."""

from __future__ import annotations

import json

import pytest

from .media import CODECS, SPEECH_AT, video


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    return [video(folder / f"talk.{ext}") for ext in CODECS]


def test_every_video_container_is_ingested_and_cited_at_the_spoken_second(videos, run_cli, tmp_path):
    code, out, err = run_cli("ingest", videos[0].parent, "--no-diarize")
    assert code == 0, err
    assert sorted(line.split()[1] for line in out.splitlines() if line.startswith("ok")) == sorted(
        v.name for v in videos)

    code, out, err = run_cli("search", "harbour master counted ships before the storm", "--json", "-k", "10")
    assert code == 0, err
    hits = json.loads(out)["hits"]
    assert {h["file"] for h in hits} == {v.name for v in videos}
    for h in hits:  # each passage starts where the speech does, not at the file's start
        assert abs(h["start"] - SPEECH_AT) <= 1.0, h
        assert "ships before the storm" in h["text"].lower()


def test_a_video_with_no_sound_is_a_one_line_error_and_the_folder_goes_on(videos, run_cli, tmp_path):
    import shutil
    import subprocess

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(videos[0], folder / "talk.webm")
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc=s=160x120:r=10:d=2", "-c:v", "libvpx", str(folder / "mute.webm")], check=True)
    code, out, err = run_cli("ingest", folder, "--no-diarize")
    assert code == 1
    failed = [line for line in err.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1 and "mute.webm: a video with no audio track" in failed[0], err
    assert "1 ingested, 0 skipped, 1 failed" in out
