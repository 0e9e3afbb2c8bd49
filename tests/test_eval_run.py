"""`earmark eval` end to end on two real clips, and its drift and question-file checks on tiny inputs."""

from __future__ import annotations

import json
import shutil

import pytest

from earmark_eval.archives import drift, find_phrase, gap_words
from earmark_eval.run import QuestionFileError, load_questions, run_eval

from .conftest import SAMPLES

JFK, COTTON = "jfk-inaugural-1961-excerpt.flac", "librispeech-1995-1837-0001.wav"
REFERENCES = {  # the recordings' own transcripts, as their sidecars in shared/data/real hold them
    JFK: "And so my fellow Americans, ask not what your country can do for you, ask what you can do for "
         "your country.",
    COTTON: "IT WAS THE FIRST GREAT SORROW OF HIS LIFE IT WAS NOT SO MUCH THE LOSS OF THE COTTON ITSELF BUT "
            "THE FANTASY THE HOPES THE DREAMS BUILT AROUND IT",
}
QUESTIONS = [
    {"id": "jfk", "question": "What did Kennedy ask Americans to do?", "answerable": True,
     "gold": [{"file": JFK, "start": 8.19, "end": 10.36}], "answer_any": ["your country"], "lang": "en",
     "kind": "fact"},
    {"id": "cotton", "question": "What did he lose that brought him grief for the first time in his life?",
     "answerable": True, "gold": [{"file": COTTON, "start": 0.0, "end": 8.73}], "answer_any": ["cotton"],
     "lang": "en", "kind": "fact"},
    {"id": "none", "question": "What is the boiling point of mercury in Kelvin?", "answerable": False,
     "gold": [], "answer_any": [], "lang": "en", "kind": "unanswerable"},
]


def _write_questions(path, questions) -> None:
    path.write_text("".join(json.dumps(q) + "\n" for q in questions), encoding="utf-8")


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory):
    """One run of run_eval over two clips and three questions; returns (report, out dir)."""
    root = tmp_path_factory.mktemp("eval-run")
    audio = root / "audio"
    audio.mkdir()
    for name, reference in REFERENCES.items():
        shutil.copy(SAMPLES / name, audio / name)
        (audio / name).with_suffix(".txt").write_text(reference + "\n", encoding="utf-8")  # the sidecar
    _write_questions(root / "questions.jsonl", QUESTIONS)
    out = root / "out"
    report = run_eval(audio, root / "questions.jsonl", out, set_name="tiny", long_minutes=(), baseline=False)
    return report, out


def test_eval_writes_report_json_markdown_and_plots(eval_run):
    report, out = eval_run
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["set"] == "tiny" and on_disk["n_questions"] == 3 and on_disk["n_files"] == 2
    assert on_disk["config"]["models"]["whisper"] and on_disk["config"]["date"]
    md = (out / "report.md").read_text()
    assert md.index("## Headline") < md.index("## Retrieval") < md.index("## Speed and memory")
    assert "**hit@k**" in md and "**MRR**" in md and "Not run (`--long-minutes 0`)" in md
    # One unanswerable question, declined: its abstention's 95% interval runs from 1 / (1 + z^2) to 1.
    assert "| 95% interval: answer accuracy (answerable) / abstention |" in md and "0.21–1.00 |" in md
    assert (out / "latency.png").stat().st_size > 5000 and "](latency.png)" in md
    assert on_disk["ingest"]["mode"] == "fresh" and (out / "library" / "catalog.sqlite").exists()


def test_retrieval_is_scored_for_every_search_mode(eval_run):
    from earmark_eval.run import search_variants
    from pipeline.search import MODES

    report, _ = eval_run
    # Every plain mode, and hybrid with each installed reranker (the LLM one always is).
    assert set(report["retrieval"]) == {name for name, _ in search_variants()} >= set(MODES) | {"hybrid+llm"}
    for mode, r in report["retrieval"].items():
        assert r["n"] == 2  # the unanswerable question has no gold and is not scored
        assert {"hit@1", "hit@5", "mrr", "ndcg@10"} <= set(r) and r["by_kind"]["fact"]["n"] == 2
        rows = {row["id"]: row for row in r["per_question"]}
        assert rows["jfk"]["hit@5"] == 1.0, mode  # only two recordings: the JFK passage is in any top 5
        assert r["mrr"] == pytest.approx(sum(1 / row["rank"] if row["rank"] else 0 for row in rows.values()) / 2)
    dense = {row["id"]: row for row in report["retrieval"]["dense"]["per_question"]}
    assert dense["cotton"]["hit@5"] == 1.0 and report["retrieval"]["dense"]["hit@5"] == 1.0


def test_answers_count_the_unanswerable_question_in_abstention(eval_run):
    report, _ = eval_run
    a = report["answers"]
    assert (a["n"], a["n_answerable"], a["n_unanswerable"], a["missing"]) == (3, 2, 1, 0)
    by_id = {q["id"]: q for q in report["questions"]}
    declined = not by_id["none"]["found"]
    assert a["abstention_rate"] == (1.0 if declined else 0.0) and a["accuracy_unanswerable"] == a["abstention_rate"]
    assert declined  # nothing in two clips says anything about mercury
    jfk = by_id["jfk"]["answer"]
    if jfk["found"]:
        assert jfk["citations"][0]["file"] == JFK and a["citation_validity"] == 1.0


def test_transcription_speed_and_memory_are_measured(eval_run):
    report, _ = eval_run
    t = report["transcription"]
    en = t["pooled"]["en"]
    assert en["files"] == 2 and en["ref_words"] == 22 + 30  # after whisper's English normaliser
    assert en["wer"] < 0.3 and en["word_errors"] == sum(round(f["wer"] * f["ref_words"]) for f in t["files"])
    speed = report["speed"]
    assert speed["ingest"]["audio_seconds"] == pytest.approx(11.0 + 8.73, abs=0.1)
    assert speed["ingest"]["rtf"] > 0 and speed["ingest"]["timings"]["transcribe"] > 0
    assert speed["baseline"] is None and speed["rtf_ratio"] is None and report["archives"] == []
    assert all(s["n"] == 3 for s in speed["latency"]["search"].values()) and speed["latency"]["ask"]["n"] == 3
    assert report["memory"]["after_ingest"]["peak_rss_mb"] > 100
    parallel = speed["ingest_parallel"]  # the folder again, in one process (the default is one per core)
    assert parallel["jobs"] == 1 and parallel["counts"] == {"ingested": 2}
    assert parallel["audio_seconds"] == pytest.approx(speed["ingest"]["audio_seconds"], abs=0.01)


def test_an_ingest_in_a_child_process_reports_its_own_peak_memory(tmp_path):
    """How eval measures memory against file length: each archive's ingest in a process of its own."""
    from earmark_eval.timing import ingest_in_child

    lines = []
    run = ingest_in_child(tmp_path / "lib", [SAMPLES / JFK], "all-MiniLM-L6-v2", lines.append)
    assert run["counts"] == {"ingested": 1} and run["audio_seconds"] == pytest.approx(11.0, abs=0.1)
    assert 200 < run["peak_rss_mb"] < 2500  # Whisper, the voice encoder and the embedder, loaded
    assert any("ingested" in line and JFK in line for line in lines)


# ---------------------------------------------------------------- tiny inputs, no models

def test_a_malformed_question_line_names_its_line(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps(QUESTIONS[0]) + "\n\n" + json.dumps({"id": "x", "question": "Why?"}) + "\n")
    with pytest.raises(QuestionFileError, match=r"q.jsonl line 3: missing required field 'answerable'"):
        load_questions(path)
    path.write_text(json.dumps(QUESTIONS[0]) + "\n{not json\n")
    with pytest.raises(QuestionFileError, match="line 2: not valid JSON"):
        load_questions(path)
    _write_questions(path, QUESTIONS)
    with pytest.raises(QuestionFileError, match=f"line 2: gold file '{COTTON}' is not in the audio folder"):
        load_questions(path, {JFK})
    assert [q["id"] for q in load_questions(path, {JFK, COTTON})] == ["jfk", "cotton", "none"]


def test_cli_reports_a_bad_question_file_in_one_line(run_cli, tmp_path):
    (tmp_path / "q.jsonl").write_text('{"id": "a", "question": "Why?", "answerable": "yes", "gold": []}\n')
    (tmp_path / "audio").mkdir()
    shutil.copy(SAMPLES / JFK, tmp_path / "audio" / JFK)
    code, out, err = run_cli("eval", "--audio", tmp_path / "audio", "--questions", tmp_path / "q.jsonl",
                             "--out", tmp_path / "out")
    assert code == 1 and "q.jsonl line 1: 'answerable' must be a bool" in err and len(err.strip().splitlines()) == 1


def _words(*spec):
    return [{"start": s, "end": s + 0.3, "text": t} for s, t in spec]


def test_drift_finds_each_phrase_near_its_true_offset():
    words = _words((99.0, " Ask"), (99.4, " not"), (99.7, " what"), (130.0, " ask"), (130.3, " not"),
                   (130.6, " what"), (700.2, " The"), (700.5, " loss,"), (700.8, " of"))
    manifest = {"duration": 1200.0, "known_phrases": [
        {"phrase": "ask not what your country can do for you", "file": JFK, "start": 100.0, "end": 104.0},
        {"phrase": "ask not what your country can do for you", "file": JFK, "start": 131.0, "end": 135.0},
        {"phrase": "the loss of the cotton itself", "file": COTTON, "start": 700.0, "end": 702.0},
        {"phrase": "nobody said this", "file": COTTON, "start": 900.0, "end": 902.0}]}
    d = drift(words, manifest)
    assert [r["error"] for r in d["rows"]] == [pytest.approx(1.0), pytest.approx(1.0), pytest.approx(0.2), None]
    assert [r["matched_words"] for r in d["rows"]] == [3, 3, 3, 0]  # "loss," folds to "loss"
    assert d["found"] == 3 and d["mean_first_10min"] == pytest.approx(1.0) and d["mean_last_10min"] == pytest.approx(0.2)
    assert find_phrase([("ask", 10.0)], "ask not what", 50.0) is None  # 40 s away: outside the window
    assert find_phrase([("ask", 10.0), ("me", 10.2)], "ask not what", 12.0) == (10.0, 1)  # first word only


def test_words_in_gaps_per_minute_and_by_kind():
    gaps = [{"start": 10.0, "end": 40.0, "kind": "silence"}, {"start": 100.0, "end": 130.0, "kind": "white"}]
    g = gap_words(_words((5.0, " before"), (20.0, " you you"), (110.0, " Thank"), (200.0, " after")), gaps)
    assert g["all"] == {"gaps": 2, "gap_minutes": 1.0, "words": 3, "per_minute": 3.0}
    assert g["silence"]["words"] == 2 and g["white"]["per_minute"] == pytest.approx(1 / 0.5)
