"""Passages from segments: length bounds, sentence boundaries, overlap, gaps, flagged segments."""

from pipeline.chunk import passages
from pipeline.config import ChunkOptions
from pipeline.records import Segment, Transcript


def seg(i, start, end, text, flag=None):
    return Segment(id=i, start=start, end=end, text=text, words=(), language="en", avg_logprob=-0.2,
                   no_speech_prob=0.01, compression_ratio=1.2, flag=flag)


def transcript(segs):
    return Transcript(file_hash="ab" * 32, file_name="talk.wav", duration=segs[-1].end, segments=tuple(segs),
                      model={}, created="2026-01-01T00:00:00+00:00")


def test_passages_respect_bounds_and_prefer_sentence_ends():
    # 40 segments of 5 s; every third ends a sentence.
    segs = [seg(i, i * 5.0, i * 5.0 + 5.0, f"words {i}" + ("." if i % 3 == 2 else ",")) for i in range(40)]
    ps = passages(transcript(segs))
    assert ps[0].start == 0.0 and ps[-1].end == 200.0
    for p in ps[:-1]:
        assert 20.0 <= p.end - p.start <= 60.0
        assert p.text.endswith(".")
    # Exact times come from the segments, and consecutive passages share one segment.
    for a, b in zip(ps, ps[1:]):
        assert b.segment_ids[0] == a.segment_ids[-1]
        assert b.start == segs[b.segment_ids[0]].start


def test_no_sentence_end_still_caps_at_max():
    segs = [seg(i, i * 5.0, i * 5.0 + 5.0, f"no stop {i}") for i in range(30)]
    ps = passages(transcript(segs), ChunkOptions(max_seconds=60))
    assert all(p.end - p.start <= 60.0 for p in ps)
    assert {i for p in ps for i in p.segment_ids} == set(range(30))


def test_long_silence_ends_a_passage_without_overlap_across_it():
    segs = [seg(0, 0, 5, "Hello."), seg(1, 5, 9, "Still here"), seg(2, 300, 305, "Much later."), seg(3, 305, 310, "End")]
    ps = passages(transcript(segs))
    assert [p.segment_ids for p in ps] == [(0, 1), (2, 3)]


def test_flagged_segments_are_never_indexed():
    segs = [seg(0, 0, 5, "Real speech."), seg(1, 5, 10, "Thank you. " * 5, flag="repetition"), seg(2, 10, 15, "More.")]
    ps = passages(transcript(segs))
    assert all(1 not in p.segment_ids for p in ps) and "Thank you" not in " ".join(p.text for p in ps)


def test_short_recording_is_one_passage_with_stable_id():
    ps = passages(transcript([seg(0, 0.3, 8.1, "Only one sentence.")]))
    assert len(ps) == 1 and ps[0].id == "abababababababab:0" and (ps[0].start, ps[0].end) == (0.3, 8.1)
