"""Bad input (issue 22 part 3), the quick part: a dozen generated kinds through the real `earmark`
command, and the defects users found (a dangling link with no line, a cut WAV reported whole, a name
with a newline split over two lines, a file that changes while it is read) each pinned by a test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from earmark_eval.reliability import badinput, inputs
from earmark_eval.reliability.part import Context
from pipeline import audio
from pipeline.errors import AudioError
from pipeline.ingest import discover

from .conftest import REAL, SAMPLES

WAV = SAMPLES / "librispeech-1995-1837-0001.wav"  # 8.7 s, 16 kHz mono PCM


def test_a_dangling_link_and_a_link_loop_in_a_folder_are_found_not_passed_over(tmp_path):
    (tmp_path / "gone.wav").symlink_to("nowhere/gone.wav")
    (tmp_path / "a.wav").symlink_to("b.wav")
    (tmp_path / "b.wav").symlink_to("a.wav")
    (tmp_path / "up").symlink_to(".")  # a loop of folders: not followed, so the walk ends
    (tmp_path / "notes.txt").symlink_to("nowhere.txt")  # not a recording by its name: left alone
    assert [p.name for p in discover([tmp_path])] == ["a.wav", "b.wav", "gone.wav"]
    assert audio.missing(tmp_path / "gone.wav") == "gone.wav: broken symbolic link, points to nowhere/gone.wav; " \
                                                   "fix the link or remove it"
    assert "symbolic link loop" in audio.missing(tmp_path / "a.wav")


def test_a_wav_cut_short_is_seen_as_truncated(tmp_path):
    cut = tmp_path / "cut.wav"
    cut.write_bytes(WAV.read_bytes()[:5000])
    info = audio.probe(cut)
    decoded = sum(len(b.samples) for b in audio.stream(cut)) / audio.SAMPLE_RATE
    # ffprobe clamps a WAV's length to the bytes present; the header still says 8.7 s.
    assert info.seconds == pytest.approx(decoded, abs=0.01)
    assert audio.truncation(info, decoded) == "truncated — its header says 8.7 s, only 0.2 s decoded"
    assert audio.truncation(audio.probe(WAV), 8.73) is None


def test_names_are_printed_on_one_line():
    assert audio.shown(Path("/x/new\nline.wav")) == "new\\nline.wav"
    assert audio.shown("\x1b[31mred\t.wav") == "\\x1b[31mred\\t.wav"
    assert audio.shown(os.fsdecode(b"bad\xff.wav")) == "bad\\xff.wav"
    assert audio.shown("Ünïcödé 日本語 with spaces.wav") == "Ünïcödé 日本語 with spaces.wav"
    assert audio.one_line("a\u2028b\u202ec") == "a\\u2028b\\u202ec"


def test_a_file_changed_after_hashing_is_refused(tmp_path):
    f = tmp_path / "growing.wav"
    shutil.copyfile(WAV, f)
    sha = audio.sha256_file(f)
    audio.check_unchanged(f, sha)
    with open(f, "ab") as out:
        out.write(b"\0" * 3200)
    with pytest.raises(AudioError, match=r"growing\.wav: changed while it was read.*ingest it again"):
        audio.check_unchanged(f, sha)


def test_a_file_swapped_for_another_and_back_while_it_is_read_is_refused(tmp_path):
    # Its bytes are the ones hashed again when it is checked, but what was decoded between may not be.
    f, other = tmp_path / "replaced.wav", tmp_path / "other.wav"
    shutil.copyfile(WAV, f)
    sha = audio.sha256_file(f)
    held = audio.check_unchanged(f, sha)
    for source in (other, WAV):  # another recording, then the first one again, each swapped in whole
        if source is other:
            other.write_bytes(b"RIFF" + b"\0" * 4000)
        shutil.copyfile(source, tmp_path / ".swap")
        os.replace(tmp_path / ".swap", f)
    assert audio.sha256_file(f) == sha
    with pytest.raises(AudioError, match=r"replaced\.wav: changed while it was read"):
        audio.check_unchanged(f, sha, held)


def test_a_video_without_sound_and_an_unreadable_path_are_one_line_errors(tmp_path):
    video = tmp_path / "silent.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=blue:s=64x64:d=1", "-c:v", "mpeg4",
                    str(video)], check=True)
    with pytest.raises(AudioError, match=r"^silent\.mp4: a video with no audio track"):
        audio.probe(video)
    with pytest.raises(AudioError, match=r"cannot be read .*check its permissions"):
        audio.sha256_file(tmp_path)  # a folder: reading it fails as an unreadable file does


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """The quick kinds of the reliability part, made and ingested by one real `earmark ingest`."""
    if not (REAL / "jfk-inaugural-1961-excerpt.flac").exists():
        pytest.skip("the shared evaluation recordings are not present")
    work = tmp_path_factory.mktemp("badinput")
    kinds = [k for k in inputs.folder_kinds() if k.quick]
    assert not inputs.make_kinds(kinds, work / "batch", inputs.Sources(work / "sources", REAL))
    ctx = Context(out=work, audio=REAL, quick=True, earmark=(str(Path(sys.executable).with_name("earmark")),))
    run = badinput.earmark(ctx, "--library", work / "library", "ingest", "--no-diarize", work / "batch")
    return ctx, work, kinds, run


def test_each_quick_kind_gets_one_right_line_and_the_batch_goes_on(quick_run):
    _, _, kinds, run = quick_run
    assert len(kinds) >= 12
    wrong = [o for o in (badinput.judge(k, run) for k in kinds) if not o.met]
    assert not wrong, [(o.kind, o.line, o.note) for o in wrong]
    assert run.rc == 1 and "Traceback" not in run.err
    assert "failed" in run.out.splitlines()[-1]


def test_the_users_three_defects_are_fixed(quick_run):
    _, _, _, run = quick_run
    dangling = badinput.lines_for(run, "dangling-link.wav")
    assert len(dangling) == 1 and dangling[0].startswith("FAIL") and "broken symbolic link" in dangling[0]
    cut = badinput.lines_for(run, "truncated-wav-5000B.wav")
    assert cut == [l for l in run.lines if "truncated-wav-5000B.wav" in l]
    assert "warning: truncated — its header says 11.0 s, only 0.2 s decoded" in cut[0]
    assert len(badinput.lines_for(run, "new\nline.wav")) == 1
    assert not [l for l in run.lines if l.startswith("line.wav")]


def test_a_file_growing_while_it_is_read_is_refused_then_taken_once_still(quick_run):
    ctx, work, _, _ = quick_run
    w = badinput.World(ctx, work / "library", inputs.Sources(work / "sources-2", REAL), work)
    outcome = badinput._changing(w, "growing", replace=False)
    assert outcome.met, (outcome.line, outcome.note)


def test_a_disk_that_fills_up_mid_ingest_gets_one_line_per_file_and_loses_nothing(quick_run):
    ctx, work, _, _ = quick_run
    w = badinput.World(ctx, work / "library", inputs.Sources(work / "sources-3", REAL), work)
    outcome = badinput.own_disk_full(w)
    if outcome.line == "(not run)":
        pytest.skip(outcome.note)  # mounting a tmpfs needs root
    assert outcome.met, (outcome.line, outcome.note)
    assert "disk holding the library" in outcome.line and "is full" in outcome.line
