"""Transcription with the packaged Whisper base on real audio."""

import difflib
import re

import numpy as np
import pytest
import soundfile as sf

from pipeline import audio
from pipeline.config import TranscribeOptions
from pipeline.transcribe import alone_regions, flag_of, transcribe, transcribe_piece
from pipeline.vad import MAX_REGION_SECONDS, pieces

from .conftest import SAMPLES, real


def _norm(text: str) -> str:
    return re.sub(r"[^a-z ]", "", text.lower())


@pytest.fixture(scope="module")
def jfk_segments():
    return transcribe(audio.load(SAMPLES / "jfk-inaugural-1961-excerpt.flac"), TranscribeOptions())


def test_jfk_transcript_and_first_timestamp(jfk_segments):
    text = _norm(" ".join(s.text for s in jfk_segments))
    assert "ask not what your country can do for you" in text
    assert jfk_segments[0].start < 1.0
    assert all(s.language == "en" for s in jfk_segments)


def test_segments_keep_words_and_decoder_statistics(jfk_segments):
    seg = jfk_segments[0]
    assert seg.words and seg.words[0].start >= seg.start - 0.01 and seg.words[-1].end <= seg.end + 0.01
    assert "".join(w.text for w in seg.words).strip() == seg.text
    assert seg.avg_logprob < 0 and 0 <= seg.no_speech_prob <= 1 and seg.compression_ratio > 0
    # Word times are monotonic and lie inside the 11 s recording.
    starts = [w.start for s in jfk_segments for w in s.words]
    assert starts == sorted(starts) and starts[-1] < 11.0


@pytest.mark.parametrize("backend", ["openai-whisper", "faster-whisper"])
def test_both_backends_give_the_same_transcript_shape(backend):
    segs = transcribe(audio.load(SAMPLES / "jfk-inaugural-1961-excerpt.flac"), TranscribeOptions(backend=backend))
    assert "ask not what your country can do for you" in _norm(" ".join(s.text for s in segs))
    assert segs[0].start < 1.0 and segs[-1].end <= 11.0
    words = [w for s in segs for w in s.words]
    assert len(words) >= 20 and all(0 <= w.start <= w.end <= 11.0 for w in words)
    assert {s.language for s in segs} == {"en"} and all(s.avg_logprob < 0 for s in segs)


def test_unknown_backend_lists_the_valid_ones():
    from pipeline.errors import ConfigError
    from pipeline.transcribe import backend

    with pytest.raises(ConfigError, match="faster-whisper, openai-whisper"):
        backend(TranscribeOptions(backend="whisper-magic"))


def test_phone_call_mentions_chicago_around_14_to_21s():
    segs = transcribe(audio.load(real("pyannote-sample-phonecall-2spk.wav")), TranscribeOptions())
    hits = [s for s in segs if "chicago" in s.text.lower() and s.end > 14 and s.start < 21]
    assert hits, [(s.start, s.end, s.text) for s in segs]


def test_language_is_detected_per_speech_region(tmp_path):
    """A file that opens in Mandarin must not have its English decoded as Chinese."""
    zh = audio.load(real("aishell1-BAC009S0724W0121.wav")).samples
    en = audio.load(SAMPLES / "jfk-inaugural-1961-excerpt.flac").samples
    gap = np.zeros(audio.SAMPLE_RATE * 3, dtype=np.float32)
    path = tmp_path / "zh-then-en.wav"
    sf.write(path, np.concatenate([zh, gap, en]), audio.SAMPLE_RATE)
    segs = transcribe(audio.load(path), TranscribeOptions())
    offset = (len(zh) + len(gap)) / audio.SAMPLE_RATE
    english = [s for s in segs if s.start >= offset - 0.5]
    assert {s.language for s in english} == {"en"}
    assert "ask not what your country" in _norm(" ".join(s.text for s in english))
    assert any(s.language == "zh" for s in segs if s.end <= offset)
    # Times are on the stitched file's timeline: JFK starts right after the gap.
    assert english[0].start == pytest.approx(offset, abs=1.0)


def test_speech_outside_english_is_decoded_with_a_beam_and_english_greedily(tmp_path):
    """Whisper base errs most outside English, where a beam gets right what greedy decoding garbles
    ("Leichenhaler"); English stays greedy, so its segments, and the passages made of them, do not move."""
    german = transcribe(audio.load(real("picovoice-leopard-test-de.wav")), TranscribeOptions(translate=False))
    assert re.search(r"\bLeichenhalle\b", " ".join(s.text for s in german)), german
    # Harvard sentences on a telephone line, which a beam of 5 hears as "please most and a girl".
    path = tmp_path / "harvard-8s.wav"
    sf.write(path, audio.load(real("osr-harvard-list72-8k-telephone.wav")).samples[:8 * audio.SAMPLE_RATE],
             audio.SAMPLE_RATE)
    english = transcribe(audio.load(path), TranscribeOptions(translate=False))
    greedy = transcribe(audio.load(path), TranscribeOptions(translate=False, foreign_beam_size=1))
    assert {s.language for s in english} == {"en"}
    assert [(s.start, s.end, s.text) for s in english] == [(s.start, s.end, s.text) for s in greedy]
    assert "please most any girl" in _norm(english[0].text)


def test_alone_regions_are_those_no_neighbour_can_share_a_window_with():
    from pipeline.vad import Region

    sec = audio.SAMPLE_RATE
    regions = [Region(0, 5 * sec), Region(40 * sec, 45 * sec), Region(50 * sec, 52 * sec), Region(90 * sec, 99 * sec)]
    assert alone_regions(regions, 30 * sec) == [0, 3]  # the two in the middle fit in one window
    assert alone_regions(regions[:1], 30 * sec) == [0]
    assert alone_regions([], 30 * sec) == []


def test_a_lone_utterance_is_encoded_once_for_its_language_and_its_words(tmp_path, monkeypatch):
    """French, 40 s of silence, German: each utterance is a window of its own, so its language is
    detected on the encoding its decoding reuses; no region is encoded for detection alone."""
    from pipeline.transcribe import FasterWhisper

    fr = audio.load(real("picovoice-leopard-test-fr.wav")).samples
    de = audio.load(real("picovoice-leopard-test-de.wav")).samples
    path = tmp_path / "fr-then-de.wav"
    sf.write(path, np.concatenate([fr, np.zeros(audio.SAMPLE_RATE * 40, dtype=np.float32), de]), audio.SAMPLE_RATE)
    encoded: list[int] = []
    real_encode = FasterWhisper._encode
    monkeypatch.setattr(FasterWhisper, "detect", lambda self, chunks: pytest.fail("region encoded to detect it"))
    monkeypatch.setattr(FasterWhisper, "_encode",
                        lambda self, chunks, seconds: encoded.append(len(chunks)) or real_encode(self, chunks, seconds))
    segs = transcribe(audio.load(path), TranscribeOptions(translate=False))
    split = (len(fr) + 20 * audio.SAMPLE_RATE) / audio.SAMPLE_RATE
    assert {s.language for s in segs if s.end < split} == {"fr"}
    assert {s.language for s in segs if s.start > split} == {"de"}
    assert "consulat" in " ".join(s.text for s in segs) and sum(encoded) == 2, encoded


def test_the_encoder_takes_one_window_at_a_time_and_gives_what_a_batch_would(monkeypatch):
    """Encoder attention over a batch of 30 s windows held ~300 MB at once, a transient that set the
    peak memory of long files; one window a call gives the same encoder output, stacked for the decoder."""
    from pipeline.transcribe import FasterWhisper, backend

    engine = backend(TranscribeOptions())
    assert isinstance(engine, FasterWhisper)
    chunks = [audio.load(SAMPLES / "jfk-inaugural-1961-excerpt.flac").samples,
              audio.load(real("picovoice-leopard-test-es.wav")).samples]
    from faster_whisper.audio import pad_or_trim

    batched = np.array(engine.model.encode(np.stack(
        [pad_or_trim(engine.model.feature_extractor(c)[..., :-1], 3000) for c in chunks])))
    sizes: list[int] = []
    real_encode = engine.model.encode
    monkeypatch.setattr(engine.model, "encode", lambda features: sizes.append(len(features)) or real_encode(features))
    out = np.array(engine._encode(chunks, 30.0))
    assert sizes == [1, 1] and out.shape == batched.shape
    assert np.allclose(out, batched, atol=1e-4)


def test_words_are_aligned_a_window_at_a_time_and_as_if_alone(monkeypatch):
    """Aligning a batch of windows held the cross-attention of all of them at once (the transient that
    made a 3-hour file's peak memory grow past a 10-minute one's); one window a call, and a window's
    word times are those it gets when decoded alone, whatever shares its batch."""
    from pipeline.transcribe import FasterWhisper, Job, backend

    engine = backend(TranscribeOptions())
    assert isinstance(engine, FasterWhisper)
    jfk = audio.load(SAMPLES / "jfk-inaugural-1961-excerpt.flac").samples
    other = audio.load(real("librispeech-1272-128104-0000.wav")).samples
    # The second window opens with 3 s of silence: its first word lies far from time 0.
    late = np.concatenate([np.zeros(3 * audio.SAMPLE_RATE, dtype=np.float32), other])
    alone = engine.decode([Job(late, "en", False)], TranscribeOptions())[0][0]
    sizes: list[int] = []
    real_align = engine.model.find_alignment
    monkeypatch.setattr(engine.model, "find_alignment",
                        lambda tokenizer, tokens, *a, **k: sizes.append(len(tokens)) or real_align(tokenizer, tokens, *a, **k))
    (first, _), (second, _) = engine.decode([Job(jfk, "en", False), Job(late, "en", False)], TranscribeOptions())
    assert sizes == [1, 1]
    assert first and [w["start"] for s in second for w in s["words"]] == [w["start"] for s in alone for w in s["words"]]
    assert second[0]["words"][0]["start"] >= 2.5


def test_silence_and_noise_produce_no_speech(tmp_path):
    rng = np.random.default_rng(0)
    quiet = np.concatenate([np.zeros(16000 * 10), rng.normal(0, 0.003, 16000 * 10)]).astype(np.float32)
    path = tmp_path / "quiet.wav"
    sf.write(path, quiet, audio.SAMPLE_RATE)
    segs = transcribe(audio.load(path), TranscribeOptions())
    assert [s for s in segs if s.flag is None] == []


def test_repetition_loops_are_flagged_not_indexed():
    opts = TranscribeOptions()
    ok = {"compression_ratio": 1.3, "no_speech_prob": 0.1, "avg_logprob": -0.3}
    assert flag_of(ok, "And so my fellow Americans, ask not.", opts) is None
    loop = "Thank you. Thank you. Thank you. Thank you. Thank you."
    assert flag_of(ok, loop, opts) == "repetition"
    assert flag_of({**ok, "compression_ratio": 3.1}, "la la la", opts) == "repetition"
    assert flag_of({**ok, "no_speech_prob": 0.9, "avg_logprob": -1.5}, "you", opts) == "no-speech"


def test_a_file_read_in_pieces_is_cut_only_in_silence_and_transcribed_the_same():
    """Long files are read a block at a time; speech running over a block's end is carried over."""
    path = real("ami-meeting-excerpt-4spk-60s.wav")
    whole = audio.load(path).samples
    cuts = list(pieces(audio.stream(path, block_seconds=20)))
    assert len(cuts) >= 3
    assert np.array_equal(np.concatenate([p.samples for p, _ in cuts]), whole)  # nothing lost or repeated
    for piece, regions in cuts:
        assert all(0 <= r.start < r.end <= len(piece.samples) for r in regions)  # no region crosses a cut
        assert all(r.seconds <= MAX_REGION_SECONDS + 0.7 for r in regions)  # each fits a Whisper window
    segments = [s for piece, regions in cuts for s in transcribe_piece(piece, regions, TranscribeOptions())[0]]
    reference = transcribe(audio.load(path), TranscribeOptions())
    assert [s.start for s in segments] == sorted(s.start for s in segments)
    # Windows fall a little differently, so Whisper base may hear this messy meeting a little
    # differently (0.88 alike when written); a lost or repeated stretch would cost a third.
    words, expected = (_norm(" ".join(s.text for s in segs)).split() for segs in (segments, reference))
    assert difflib.SequenceMatcher(a=words, b=expected).ratio() >= 0.8, (words, expected)
