"""Eval's numbers on tiny inputs with known answers, the stitcher's offsets, and the real question set."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from earmark_eval import metrics as m
from earmark_eval.align import align_reference, find_span
from earmark_eval.references import EVAL_DIR, REAL_DIR, reference_text
from earmark_eval.stitch import build_archive, load_clip, load_phrases, phrase_questions

SET_PATH = EVAL_DIR / "sets" / "real.jsonl"
needs_real = pytest.mark.skipif(not REAL_DIR.is_dir(),
                                reason=f"{REAL_DIR} absent (the shared data sits beside the checkout)")
GOLD = [{"file": "a.wav", "start": 10.0, "end": 12.0}]


def span(file, start, end, **extra):
    return {"file": file, "start": start, "end": end, **extra}


# ---------------------------------------------------------------- retrieval

@pytest.mark.parametrize("start,end,expected", [
    (14.0, 15.0, True),     # touches g.end + 2 s exactly
    (14.01, 15.0, False),   # just past it
    (5.0, 8.0, True),       # ends exactly at g.start - 2 s
    (5.0, 7.99, False),
    (10.5, 11.0, True),     # inside
    (0.0, 60.0, True),      # covers the span
])
def test_is_hit_at_the_two_second_widening_boundary(start, end, expected):
    assert m.is_hit(span("a.wav", start, end), GOLD) is expected


def test_is_hit_needs_the_same_file():
    assert not m.is_hit(span("b.wav", 10.0, 12.0), GOLD)
    assert m.is_hit(span("/some/dir/a.wav", 10.0, 12.0), GOLD)  # a path still names the file


def test_hit_at_k_and_reciprocal_rank():
    hits = [span("b.wav", 10, 12), span("a.wav", 30, 40), span("a.wav", 11, 13)]
    assert [m.hit_at_k(hits, GOLD, k) for k in (1, 2, 3)] == [0.0, 0.0, 1.0]
    assert m.reciprocal_rank(hits, GOLD) == pytest.approx(1 / 3)
    assert m.reciprocal_rank(hits[:2], GOLD) == 0.0


def test_ndcg_by_hand():
    gold = [span("a.wav", 10, 12), span("a.wav", 50, 52)]
    # ranks: miss, gold 1, gold 1 again (no new credit), gold 2
    hits = [span("a.wav", 30, 31), span("a.wav", 10, 11), span("a.wav", 11, 12), span("a.wav", 50, 51)]
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3)
    assert m.ndcg_at_k(hits, gold, k=10) == pytest.approx(dcg / idcg)  # 0.6509
    assert m.ndcg_at_k(hits, gold, k=10) == pytest.approx(0.65092, abs=1e-5)
    assert m.ndcg_at_k(hits[1:2] + hits[3:], gold) == pytest.approx(1.0)
    assert m.ndcg_at_k(hits, gold, k=3) == pytest.approx((1 / math.log2(3)) / idcg)


def test_ndcg_never_exceeds_one_when_chunks_overlap_one_gold_span():
    hits = [span("a.wav", 9, 11), span("a.wav", 11, 13), span("a.wav", 12, 14)]
    assert m.ndcg_at_k(hits, GOLD) == pytest.approx(1.0)
    assert m.ndcg_at_k([span("x.wav", 0, 1)] + hits, GOLD) == pytest.approx(1 / math.log2(3))


def test_retrieval_metrics_skip_unanswerable_and_count_missing_results_as_empty():
    questions = [
        {"id": "q1", "answerable": True, "gold": GOLD, "kind": "fact"},
        {"id": "q2", "answerable": True, "gold": GOLD, "kind": "fact"},
        {"id": "q3", "answerable": False, "gold": [], "kind": "unanswerable"},
    ]
    results = {"q1": {"hits": [span("x.wav", 0, 1), span("a.wav", 10, 11)]}}
    out = m.retrieval_metrics(questions, results)
    assert out["n"] == 2
    assert out["mrr"] == pytest.approx((0.5 + 0.0) / 2)
    assert out["hit@1"] == 0.0 and out["hit@3"] == 0.5
    assert out["by_kind"]["fact"]["n"] == 2


# ---------------------------------------------------------------- answers

def test_answer_matching_is_accent_and_case_insensitive():
    q = {"id": "q", "answerable": True, "answer_any": ["Málaga"]}
    assert m.answer_correct(q, {"answer": "She moved to MALAGA.", "found": True, "citations": []})
    assert m.answer_correct({**q, "answer_any": ["malaga"]}, {"answer": "In Málaga", "found": True})
    assert not m.answer_correct(q, {"answer": "She moved to Malaga.", "found": False})
    assert not m.answer_correct(q, {"answer": "Madrid", "found": True})


def test_answer_all_needs_every_string():
    q = {"id": "q", "answerable": True, "answer_any": ["forest"], "answer_all": ["waters", "forests"]}
    assert m.answer_correct(q, {"answer": "Conservator of waters and forests", "found": True})
    assert not m.answer_correct(q, {"answer": "Conservator of forests", "found": True})


def test_unanswerable_is_correct_only_without_an_answer_and_without_citations():
    q = {"id": "q", "answerable": False, "gold": []}
    cite = span("a.wav", 1, 2, n=1, text="x")
    assert m.answer_correct(q, {"answer": "Not in the recordings.", "found": False, "citations": []})
    assert not m.answer_correct(q, {"answer": "Not found", "found": False, "citations": [cite]})
    assert not m.answer_correct(q, {"answer": "Paris", "found": True, "citations": [cite]})
    assert not m.answer_correct(q, None)


@pytest.mark.parametrize("start,end,file,valid", [
    (0.0, 10.5, "a.wav", True),     # duration + 0.5 s slack
    (0.0, 10.51, "a.wav", False),   # beyond it
    (-0.1, 3.0, "a.wav", False),
    (3.0, 3.0, "a.wav", False),     # empty span
    (1.0, 2.0, "nope.wav", False),  # not a known recording
])
def test_citation_validity(start, end, file, valid):
    assert m.citation_valid(span(file, start, end), {"a.wav": 10.0}) is valid


def test_answer_metrics_citation_support_and_timestamp_error():
    questions = [
        {"id": "q1", "answerable": True, "gold": GOLD, "answer_any": ["yes"], "kind": "fact"},
        {"id": "q2", "answerable": True, "gold": GOLD, "answer_any": ["yes"], "kind": "fact"},
        {"id": "q3", "answerable": False, "gold": [], "kind": "unanswerable"},
    ]
    answers = {
        "q1": {"answer": "yes", "found": True, "citations": [span("a.wav", 10.5, 12, n=1)]},
        "q2": {"answer": "yes", "found": True,
               "citations": [span("a.wav", 13.0, 15, n=1), span("a.wav", 40, 45, n=2)]},
        "q3": {"answer": "no idea", "found": False, "citations": []},
    }
    out = m.answer_metrics(questions, answers, {"a.wav": 60.0})
    assert out["accuracy"] == 1.0 and out["abstention_rate"] == 1.0
    assert out["citation_validity"] == 1.0
    assert out["citation_support"] == pytest.approx(2 / 3)
    assert out["fully_supported"] == 0.5
    assert out["timestamp_error_mean"] == pytest.approx((0.5 + 3.0) / 2)
    assert out["false_abstention_rate"] == 0.0
    z2 = 1.959964 ** 2  # all of n right: Wilson's low end is n / (n + z^2), its high end 1
    assert out["interval95"]["accuracy"] == pytest.approx([3 / (3 + z2), 1.0])
    assert out["interval95"]["abstention_rate"] == pytest.approx([1 / (1 + z2), 1.0])


def test_wilson_interval_of_a_share():
    z2 = 1.959964 ** 2
    assert m.interval([False] * 8) == pytest.approx([0.0, z2 / (8 + z2)])
    low, high = m.interval([True] * 31 + [False] * 16)  # 31 of 47: about 0.52 to 0.78
    assert low == pytest.approx(0.5167, abs=1e-3) and high == pytest.approx(0.7783, abs=1e-3)
    assert m.interval([]) is None


# ---------------------------------------------------------------- transcription and latency

def test_wer_on_a_known_pair():
    row = m.wer_cer("the cat sat", "the cat sit", "en")
    assert row["wer"] == pytest.approx(1 / 3)
    assert (row["word_errors"], row["ref_words"], row["substitutions"]) == (1, 3, 1)


def test_english_normaliser_ignores_case_punctuation_and_spelling_variants():
    assert m.wer_cer("Mr. Quilter is the apostle.", "mister quilter is the apostle", "en")["wer"] == 0.0


def test_cer_for_chinese_counts_characters():
    row = m.wer_cer("广州市房地产中介协会分析", "广州市房地产中间协会分析。", "zh")
    assert (row["char_errors"], row["ref_chars"]) == (1, 12)
    assert row["cer"] == pytest.approx(1 / 12) and row["wer"] == pytest.approx(1 / 12)


def test_pooled_error_rates_sum_counts_instead_of_averaging_ratios():
    rows = [m.wer_cer("a b c d e f g h i j", "a b c d e f g h i x", "en"), m.wer_cer("yes", "no", "en")]
    pooled = m.pooled_error_rates(rows)
    assert pooled["en"]["wer"] == pytest.approx(2 / 11)  # not (0.1 + 1.0) / 2
    assert pooled["all"]["files"] == 2


def test_latency_percentiles_and_gap_words():
    summary = m.latency_summary(list(range(1, 101)))
    assert summary["p50"] == pytest.approx(50.5) and summary["p95"] == pytest.approx(95.05)
    gaps = [{"start": 10.0, "end": 20.0}]
    words = [{"start": 11, "end": 12, "text": "thank you"}, {"start": 19.5, "end": 21, "text": "edge"}]
    assert m.words_in_gaps(words, gaps) == 2


# ---------------------------------------------------------------- references and alignment

@needs_real
def test_reference_text_prefers_evals_own_single_stream():
    phone = reference_text(REAL_DIR / "pyannote-sample-phonecall-2spk.wav")
    assert phone.startswith("Hello? Hello? Oh, hello.") and "Diane 6.680" not in phone
    sonnet = reference_text(REAL_DIR / "librivox-shakespeare-sonnet001-en.mp3")
    assert sonnet.startswith("1 From fairest creatures") and "#" not in sonnet
    assert reference_text(Path("/nowhere/none.wav")) is None


def test_align_reference_keeps_reference_words_with_whisper_times():
    words = [{"word": "the", "start": 0.0, "end": 0.2}, {"word": "cat", "start": 0.2, "end": 0.5},
             {"word": "sit", "start": 0.5, "end": 0.9}]
    aligned = align_reference("The cat sat.", words, "en")
    assert [(w["word"], w["match"]) for w in aligned] == [("The", "exact"), ("cat", "exact"), ("sat.", "sub")]
    assert find_span(aligned, "cat sat") == (0.2, 0.9)


# ---------------------------------------------------------------- stitcher

@pytest.fixture
def clips_dir(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for name in ("osr-harvard-list72-8k-telephone.wav", "picovoice-leopard-test-de.wav",
                 "librispeech-1272-128104-0000.wav"):
        (folder / name).symlink_to(REAL_DIR / name)
    return folder


@needs_real
def test_stitched_archive_puts_each_clip_where_the_manifest_says(tmp_path, clips_dir):
    out = tmp_path / "archive.wav"
    manifest = build_archive(out, minutes=1, seed=3, clips_dir=clips_dir)
    audio, rate = sf.read(out, dtype="int16")
    assert rate == 16000 and len(audio) == 60 * 16000 == manifest["samples"]
    assert json.loads(out.with_suffix(".json").read_text()) == manifest
    assert manifest["clips"][0]["lang"] == "en"
    for clip in manifest["clips"]:
        samples = load_clip(clips_dir / clip["file"])
        start = round(clip["offset"] * 16000)
        assert np.array_equal(audio[start:start + len(samples)], samples), clip
    spans = sorted([(c["offset"], c["offset"] + c["duration"]) for c in manifest["clips"]]
                   + [(g["start"], g["end"]) for g in manifest["gaps"]])
    assert spans[0][0] == 0.0 and spans[-1][1] == 60.0
    assert all(a[1] == pytest.approx(b[0]) for a, b in zip(spans, spans[1:]))  # no overlap, no hole
    assert all(2.0 <= g["end"] - g["start"] <= 40.0 for g in manifest["gaps"][:-1])


@needs_real
def test_stitched_known_phrases_are_clip_offset_plus_phrase_time(tmp_path, clips_dir):
    manifest = build_archive(tmp_path / "a.wav", minutes=1, seed=5, clips_dir=clips_dir)
    phrases = load_phrases()
    expected = [(c["file"], p["phrase"], round(c["offset"] + p["start"], 3))
                for c in manifest["clips"] for p in phrases.get(c["file"], [])]
    assert expected and [(p["file"], p["phrase"], p["start"]) for p in manifest["known_phrases"]] == expected
    for q in phrase_questions(manifest):
        assert all(g["file"] == "a.wav" for g in q["gold"])
    again = build_archive(tmp_path / "b.wav", minutes=1, seed=5, clips_dir=clips_dir)
    assert again["clips"] == manifest["clips"] and again["gaps"] == manifest["gaps"]  # same seed, same archive


# ---------------------------------------------------------------- the real question set

def load_set() -> list[dict]:
    return [json.loads(line) for line in SET_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]


@needs_real
def test_real_question_set_lines_are_well_formed():
    questions = load_set()
    assert len({q["id"] for q in questions}) == len(questions)
    for q in questions:
        assert {"id", "question", "answerable", "gold", "answer_any", "lang"} <= q.keys(), q["id"]
        assert isinstance(q["answerable"], bool) and q["question"].endswith("?")
        if q["answerable"]:
            assert q["gold"] and q["answer_any"], q["id"]
        else:
            assert q["gold"] == [], q["id"]
        for g in q["gold"]:
            path = REAL_DIR / g["file"]
            assert path.is_file(), g
            assert 0.0 <= g["start"] < g["end"] <= sf.info(str(path)).duration + 0.05, (q["id"], g)


@needs_real
def test_real_question_set_counts_and_coverage():
    questions = load_set()
    kinds = Counter(q.get("kind") for q in questions)
    recordings = {p.name for p in REAL_DIR.iterdir() if p.suffix in (".wav", ".flac", ".mp3")}
    covered = {g["file"] for q in questions for g in q["gold"]}
    assert len(questions) >= 40
    assert covered == recordings
    assert sum(not q["answerable"] for q in questions) >= 6
    assert sum(q["lang"] != "en" for q in questions if q["answerable"]) >= 5
    assert kinds["cross-lingual"] >= 5 and kinds["who-said"] >= 5 and kinds["exact-phrase"] >= 5
    assert {q["speaker"] for q in questions if q.get("kind") == "who-said"} >= {"Diane", "Sheila"}


def test_chapter_boundaries_are_scored_within_the_tolerance():
    from earmark_eval.summaries import boundary_scores

    s = boundary_scores([31.0, 75.0, 200.0], [30.0, 80.0, 120.0], tolerance=10)
    assert (s["precision"], s["recall"]) == (2 / 3, 2 / 3) and abs(s["f1"] - 2 / 3) < 1e-9
    assert boundary_scores([], [])["f1"] == 1.0  # one recording, one chapter: nothing to find, nothing wrong
    assert boundary_scores([], [30.0])["recall"] == 0.0


def test_a_sweep_refuses_the_test_split_and_reads_its_curves():
    """Numbers are chosen on dev only; a sweep says which of its numbers decide nothing."""
    from earmark_eval import sweeps
    from earmark_eval.splits import SPLITS

    with pytest.raises(SystemExit, match="never swept"):
        sweeps.main(["--library", "unused", "--set", str(SPLITS["test"])])
    row = lambda v, a, b, wrong, default=False: {  # noqa: E731
        "value": v, "default": default, "answers correct (answerable)": a, "abstention (unanswerable)": b,
        "citations supported": 1.0, "wrong": wrong}
    flat = [row(0.1, 0.8, 0.7, ["q1"]), row(0.2, 0.8, 0.7, ["q1"], True), row(0.3, 0.8, 0.7, ["q1"])]
    assert "decides nothing" in sweeps.verdict(flat)
    best = [row(0.1, 0.7, 0.7, ["q1", "q2"]), row(0.2, 0.8, 0.7, ["q1"], True), row(0.3, 0.8, 0.6, ["q1", "q9"])]
    assert "default is best" in sweeps.verdict(best)
    # Better on one figure and worse on the other is a trade, not better; as good on both and better on one is.
    trade = [row(0.1, 0.9, 0.5, ["q9"]), row(0.2, 0.8, 0.7, ["q1"], True)]
    assert "default is best" in sweeps.verdict(trade)
    better = [row(0.1, 0.8, 0.8, []), row(0.2, 0.8, 0.7, ["q1"], True)]
    assert "0.1" in sweeps.verdict(better)
    # The same figures with other answers wrong is a tie, named with what each gives the model to read.
    tie = [row(0.1, 0.8, 0.7, ["q2"]), row(0.2, 0.8, 0.7, ["q1"], True), row(0.3, 0.7, 0.7, ["q1", "q3"])]
    tie[0]["prompt tokens p50"], tie[1]["prompt tokens p50"] = 250, 290
    assert sweeps.verdict(tie) == ("the default is best on dev among the values tried; "
                                   "0.1 (250 prompt tokens p50) tie it (290 prompt tokens p50)")


def test_a_sweep_of_some_numbers_keeps_the_others_and_shows_what_the_model_reads(tmp_path):
    """A run of some numbers adds to the report of the same questions (the rest keep their rows and
    commit), never to another set's; a row's prompt sizes are shown where they were measured."""
    from earmark_eval import sweeps
    from earmark_eval.splits import SPLITS

    row = {"value": 4, "default": True, "answers correct (answerable)": 0.8, "abstention (unanswerable)": 0.7,
           "citations supported": 1.0, "wrong": ["q1"], "prompt tokens p50": 310, "prompt tokens p95": 622}
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"set": str(SPLITS["dev"]), "knobs": {"answer.READINGS": {"default": 2, "rows": []}}}))
    assert list(sweeps.kept_knobs(report, SPLITS["dev"])) == ["answer.READINGS"]
    assert sweeps.kept_knobs(report, tmp_path / "other.jsonl") == {}
    assert sweeps.kept_knobs(tmp_path / "none.json", SPLITS["dev"]) == {}
    text = sweeps.markdown({"n": 60, "n_answerable": 51, "n_unanswerable": 9, "knobs": {
        "answer.FOCUS_SENTENCES": {"default": 4, "rows": [row], "commit": "commit abc1234"}}}, "cmd")
    assert "| **4** | 0.80 | 0.70 | 1.00 | 310 | 622 | q1 |" in text and "Measured at: commit abc1234." in text
    assert sweeps._tokens([300, None, 100, 200]) == {"prompt tokens p50": 200, "prompt tokens p95": 290}


def test_the_scale_archive_is_made_of_distinct_blocks_each_its_own_passages():
    """eval/scale.py's synthetic recordings (--construction stretches): distinct blocks of 3 to 12 real segments in up to three
    stretches of consecutive ones; within a block pauses shorter than the chunker's max_gap, between
    blocks longer ones, so the chunker cuts a block into passages of its own; times only go forward."""
    from earmark_eval.scale import Archive
    from pipeline.config import ChunkOptions

    def seg(run, i):
        start = 10.0 * i
        return {"id": i, "start": start, "end": start + 3.0, "text": f"run {run} segment {i}", "speaker": None,
                "language": "en", "flag": None, "words": [{"text": f"w{i}", "start": start, "end": start + 3.0}]}

    pool = [[seg(r, i) for i in range(n)] for r, n in enumerate((1, 4, 20))]
    runs = Archive(pool, 1000)  # the first construction: every run of 3 to 12 consecutive segments, once
    assert len(runs.blocks) == 3 + 135 and all(len(b) == 1 and 3 <= b[0][2] <= 12 for b in runs.blocks)
    archive = Archive(pool, 200, construction="stretches")
    assert len(archive.blocks) == len(set(archive.blocks)) == 200
    for block in archive.blocks:
        assert 1 <= len(block) <= 3 and all(a + n <= len(pool[i]) for i, a, n in block)
        assert 3 <= sum(n for _, _, n in block) <= 12 or len(block) == 3
    d, _ = archive.recording(7)
    segs = d["segments"]
    gaps = [b["start"] - a["end"] for a, b in zip(segs, segs[1:])]
    assert all(g > 0 for g in gaps) and d["duration"] >= 3600
    assert any(g > ChunkOptions().max_gap for g in gaps) and any(g < 1.0 for g in gaps)
    assert all(w["start"] >= s["start"] and w["end"] <= s["end"] for s in segs for w in s["words"])
    assert archive.recording(7)[0] == d  # made from its number and the seed: the same recording again


def test_the_scale_evals_embeddings_are_kept_for_the_next_run_and_refused_for_another_embedder(tmp_path):
    """eval/scale.py --vectors: a rerun embeds only texts no earlier run embedded (the model is beside
    the point here: a counting stand-in)."""
    from earmark_eval.scale import CachedEmbedder

    class Counting:
        def __init__(self, name):
            self.name, self.texts = name, []

        def embed(self, texts):
            self.texts += texts
            return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    kept = tmp_path / "vectors.npz"
    first = CachedEmbedder(Counting("e5"), kept)
    first.embed(["a", "bb", "a"])
    first.keep()
    again_model = Counting("e5")
    again = CachedEmbedder(again_model, kept)
    got = again.embed(["bb", "ccc"])
    assert again_model.texts == ["ccc"] and again.read == 2
    assert got.tolist() == [[2.0, 1.0], [3.0, 1.0]]
    assert again.used == {"bb", "ccc"}
    with pytest.raises(SystemExit, match="holds vectors of e5, not other"):
        CachedEmbedder(Counting("other"), kept)
