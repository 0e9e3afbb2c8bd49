"""Speaker diarization on real recordings, its ingest and CLI wiring, and the DER scorer."""

import json

import numpy as np
import pytest

from pipeline.audio import SAMPLE_RATE, load, load_channels
from pipeline.calls import is_channel_split
from pipeline.diarize import Diarizer, DiarizeOptions, cluster, count, diarize, smooth
from pipeline.speakers import Turn, speaker_at
from pipeline.vad import speech_regions

from .conftest import SAMPLES, real

JFK = SAMPLES / "jfk-inaugural-1961-excerpt.flac"


def test_phone_call_has_two_speakers_and_diane_and_sheila_differ():
    turns = diarize(load(real("pyannote-sample-phonecall-2spk.wav")))
    assert count(turns) == 2
    diane = speaker_at(turns, 12.6, 14.1)  # "This is Diane in New Jersey." (.stm 12.54-14.18)
    sheila = speaker_at(turns, 14.5, 17.7)  # "And I'm Sheila in Texas, originally from Chicago." (14.44-17.77)
    assert diane and sheila and diane != sheila
    assert [t.speaker for t in turns][0] == "SPEAKER_1"  # named in order of first appearance


def test_one_voice_is_one_speaker_unless_told_otherwise():
    jfk = load(JFK)
    assert count(diarize(jfk)) == 1
    assert count(diarize(load(SAMPLES / "librispeech-1995-1837-0001.wav"))) == 1
    assert count(diarize(jfk, DiarizeOptions(num_speakers=2))) == 2


def test_stereo_call_is_split_by_channel_and_dual_mono_is_not():
    path = real("stereo-2ch-librispeech-61-70968-0000-L.wav")
    assert is_channel_split(load_channels(path))
    turns = diarize(load(path))
    by_name = {t.speaker: t for t in turns}
    assert set(by_name) == {"SPEAKER_1", "SPEAKER_2"}
    assert by_name["SPEAKER_1"].end > 4.5  # the left channel's sentence runs to the end (5 s)
    assert 2.0 < by_name["SPEAKER_2"].end < 3.2  # the right channel speaks from ~0.3 s to ~2.5 s
    # A stereo MP3 whose channels carry one reader (correlation ~1) is diarized by voice instead.
    assert not is_channel_split(load_channels(real("librivox-shakespeare-sonnet001-en.mp3")))
    assert not is_channel_split(load_channels(JFK))  # the JFK flac is dual mono too
    assert load_channels(SAMPLES / "librispeech-1995-1837-0001.wav") is None  # mono: nothing to split


def test_mel_frames_are_resemblyzers_to_the_bit_without_librosa_compiling_numba():
    import subprocess
    import sys
    import warnings

    from resemblyzer.audio import wav_to_mel_spectrogram

    from pipeline.diarize import _mel_frames

    speech = load(real("ami-meeting-excerpt-4spk-60s.wav")).samples
    noise = np.random.default_rng(0).standard_normal(70_000).astype(np.float32) * 0.1
    # every padding case of librosa's STFT: shorter than a frame, head and tail frames overlapping or
    # not, a tail frame that does not fit, several FFT blocks, a whole minute
    for n in (1, 399, 400, 519, 520, 521, 680, 16_001, 52_167, 60 * SAMPLE_RATE):
        for y in (speech[:n], noise[:n]):
            with warnings.catch_warnings():  # librosa warns that a frame is longer than a short input
                warnings.simplefilter("ignore")
                want = wav_to_mel_spectrogram(y)
            got = _mel_frames(y)
            assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want), n
    # librosa compiles its numba functions on first use: ~240 MB of LLVM in the middle of an ingest
    code = ("import sys; from pipeline.audio import load; from pipeline.diarize import diarize; "
            f"diarize(load({str(real('ami-meeting-excerpt-4spk-60s.wav'))!r})); print('numba' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == ["False"]


# ---------------------------------------------------------------- fed in pieces, as ingest streams a file

@pytest.mark.parametrize("name", ["ami-meeting-excerpt-4spk-60s.wav", "picovoice-leopard-diarization-3spk.wav"])
def test_a_recording_fed_in_pieces_cut_in_silence_gets_the_turns_it_gets_whole(name):
    audio = load(real(name))
    whole = diarize(audio)
    # Clustered over all pieces at once, a voice keeps its name from piece to piece (each picovoice
    # piece holds one of its three speakers; AMI's voices come back in later pieces). Each piece is
    # read after a lead of the one before, so its windows and frames are the whole file's, to the sample.
    assert _feed_in_pieces(audio.samples, _middles_of_pauses(audio.samples)) == whole
    assert count(whole) >= 3


def test_a_piece_that_starts_just_before_a_word_still_tells_the_voices_apart():
    # Ingest cuts where the next speech region begins (vad.pieces), so a short first word ("Hello?",
    # 6.7-7.3 s) can sit at a piece's very start; its window must still reach back as in the whole file.
    audio = load(real("pyannote-sample-phonecall-2spk.wav"))
    turns = _feed_in_pieces(audio.samples, [speech_regions(audio.samples)[0].start])
    assert count(turns) == count(diarize(audio)) == 2
    assert speaker_at(turns, 12.6, 14.1) != speaker_at(turns, 14.5, 17.7)  # Diane, then Sheila


def test_a_call_fed_in_pieces_is_split_by_channel_as_when_fed_whole():
    stereo = load_channels(real("stereo-2ch-librispeech-61-70968-0000-L.wav"))
    pause = np.zeros((2, SAMPLE_RATE), dtype=np.float32)
    # A longer call with pauses to cut in: the real call, again with its channels swapped, and again.
    call = np.concatenate([stereo, pause, stereo[::-1], pause, stereo], axis=1)
    mono = call.mean(axis=0)
    whole = Diarizer(channels=2)  # no total_samples: the hop comes from the first piece, here all of it
    whole.feed(0, mono, call)
    expected = whole.finish()
    with pytest.raises(ValueError, match="back to back"):
        whole.feed(0, mono, call)
    turns = _feed_in_pieces(mono, _middles_of_pauses(mono), call)
    assert len(turns) == len(expected) == 6
    assert [t.speaker for t in turns] == [t.speaker for t in expected]
    # Channel turns are found in each piece on its own 32 ms VAD frames: edges may move by a frame or two.
    assert _bounds(turns) == pytest.approx(_bounds(expected), abs=0.1)
    assert speaker_at(turns, 7.0, 8.5) == "SPEAKER_2"  # the swapped call: its long sentence is on the right


def _middles_of_pauses(samples: np.ndarray) -> list[int]:
    regions = speech_regions(samples)
    cuts = [(a.end + b.start) // 2 for a, b in zip(regions, regions[1:])]
    assert cuts, "the recording needs a pause to cut in"
    return cuts


def _feed_in_pieces(samples: np.ndarray, cuts: list[int], channels: np.ndarray | None = None) -> list[Turn]:
    """Diarize a recording fed to a Diarizer in pieces cut at `cuts` (sample offsets)."""
    diarizer = Diarizer(total_samples=len(samples), channels=1 if channels is None else 2)
    for lo, hi in zip([0, *cuts], [*cuts, len(samples)]):
        diarizer.feed(lo, samples[lo:hi], None if channels is None else channels[:, lo:hi])
    return diarizer.finish()


def _bounds(turns: list[Turn]) -> list[float]:
    return [x for t in turns for x in (t.start, t.end)]


# ---------------------------------------------------------------- clustering and smoothing

def test_cluster_keeps_the_count_within_bounds():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=256), rng.normal(size=256)
    vectors = np.stack([a + 0.1 * rng.normal(size=256) for _ in range(10)] +
                       [b + 0.1 * rng.normal(size=256) for _ in range(10)])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    seconds = np.full(20, 0.5)
    labels = cluster(vectors, seconds)
    assert len(set(labels)) == 2 and len(set(labels[:10])) == 1 and labels[0] != labels[-1]
    assert len(set(cluster(vectors, seconds, DiarizeOptions(max_speakers=1)))) == 1
    assert len(set(cluster(vectors, seconds, DiarizeOptions(min_speakers=3)))) == 3
    # Two windows of a voice (1 s) are not a speaker of their own: folded into the nearest one.
    assert len(set(cluster(vectors[:12], seconds[:12]))) == 1
    # Past the limit, every 4th window is clustered and the rest join the nearest speaker.
    bounded = cluster(vectors, seconds, limit=6)
    assert len(set(bounded[:10])) == len(set(bounded[10:])) == 1 and bounded[0] != bounded[-1]


def test_smoothing_removes_a_lone_window_but_not_a_turn():
    assert smooth(np.array([0, 0, 1, 0, 0]), [0] * 5, 5).tolist() == [0] * 5
    assert smooth(np.array([0, 0, 0, 1, 1, 1]), [0] * 6, 3).tolist() == [0, 0, 0, 1, 1, 1]
    # Windows of different speech regions do not vote for each other.
    assert smooth(np.array([0, 1, 0]), [0, 1, 2], 3).tolist() == [0, 1, 0]


def test_impossible_speaker_bounds_are_one_line_errors(run_cli):
    code, _, err = run_cli("ingest", JFK, "--min-speakers", "3", "--max-speakers", "2")
    assert code == 2 and "impossible speaker counts" in err


def test_ingest_labels_speakers_by_voice_with_num_speakers(run_cli, tmp_path):
    code, out, err = run_cli("-q", "ingest", JFK, "--num-speakers", "2")
    assert code == 0, err
    assert "speakers found: 2" in out
    code, out, _ = run_cli("speakers", "list", JFK.name, "--json")
    assert {s["speaker"] for s in json.loads(out)["speakers"]} == {"SPEAKER_1", "SPEAKER_2"}


# ---------------------------------------------------------------- DER scorer

def test_der_is_zero_for_a_perfect_hypothesis_whatever_its_names():
    from earmark_eval.diarization import score

    ref = [(0.0, 10.0, "Diane"), (10.0, 20.0, "Sheila"), (21.0, 25.0, "Diane")]
    hyp = [(0.0, 10.0, "SPEAKER_2"), (10.0, 20.0, "SPEAKER_1"), (21.0, 25.0, "SPEAKER_2")]
    row = score(ref, hyp, 30.0)
    assert row["der"] == 0 and row["der_collar"] == 0 and row["ref_speakers"] == row["hyp_speakers"] == 2


def test_der_matches_a_hand_computed_case():
    from earmark_eval.diarization import der, pooled, score

    ref = [(0.0, 10.0, "A"), (10.0, 20.0, "B")]
    # The change is placed 2 s late: 2 s of B's speech is confused with A, out of 20 s.
    assert der(ref, [(0.0, 12.0, "x"), (12.0, 20.0, "y")], 20.0)["der"] == pytest.approx(0.10)
    # ±0.25 s collars around 0, 10 and 20 s leave 19 s scored and 1.75 s confused.
    assert der(ref, [(0.0, 12.0, "x"), (12.0, 20.0, "y")], 20.0, collar=0.25)["der"] == pytest.approx(1.75 / 19)
    # 2 s missed (8-10) and 2 s of false alarm (20-22): 4 s over 20.
    parts = der(ref, [(0.0, 8.0, "x"), (10.0, 22.0, "y")], 22.0)
    assert (parts["missed"], parts["false_alarm"], parts["confusion"]) == pytest.approx((2.0, 2.0, 0.0))
    assert parts["der"] == pytest.approx(0.2)
    rows = [score(ref, [(0.0, 12.0, "x"), (12.0, 20.0, "y")], 20.0), score(ref, ref, 20.0)]
    assert pooled(rows)["der"] == pytest.approx(2.0 / 40)


def test_report_section_has_a_row_per_file_failures_included():
    from earmark_eval.diarization import markdown, pooled, score

    ref = [(0.0, 10.0, "A"), (10.0, 20.0, "B")]
    row = {"file": "call.wav", "seconds": 0.1, **score(ref, [(0.0, 12.0, "x"), (12.0, 20.0, "y")], 20.0)}
    md = markdown({"collar": 0.25, "files": [row, {"file": "bad.wav", "error": "RuntimeError: boom"}],
                   "pooled": pooled([row])})
    assert "| call.wav | 2 / 2 | 0.100 | 0.092 |" in md and "failed: RuntimeError: boom" in md
    assert "| **pooled** |  | 0.100 | 0.092 |" in md


def test_eval_counts_speakers_in_recordings_without_reference_turns():
    """The eval also says how many voices earmark finds where only the number of speakers is known."""
    from earmark_eval.diarization import count_summary, markdown, run_diarization

    files = [real("pyannote-sample-phonecall-2spk.wav"), real("jfk-inaugural-1961-excerpt.flac")]
    result = run_diarization(files, progress=lambda line: None)
    assert [r["file"] for r in result["files"]] == ["pyannote-sample-phonecall-2spk.wav"]  # scored by its turns
    assert result["counts"] == [{"file": "jfk-inaugural-1961-excerpt.flac", "true": 1, "found": 1}]
    assert count_summary(result) == (2, 2)
    result["counts"] += [{"file": "reading.mp3", "true": 1, "found": 5}, {"file": "bad.wav", "true": 1, "error": "x"}]
    assert count_summary(result) == (2, 3)  # a failed file is not counted either way
    md = markdown(result)
    assert "| reading.mp3 | 5 / 1 |" in md and "2 of 3 get the right number" in md
