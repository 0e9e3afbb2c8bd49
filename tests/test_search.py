"""Hybrid, lexical and exact-phrase search over a real library."""

import json

import pytest

from pipeline import lexical
from pipeline.errors import ConfigError
from pipeline.records import Hit
from pipeline import search as search_module
from pipeline.search import SearchOptions, exact, fuse, in_phrase_order, one_per_moment, search


def test_lexical_finds_a_rare_name_and_hybrid_keeps_it_first(sample_library, embedder):
    for mode in ("lexical", "hybrid"):
        hits = search(sample_library, embedder, "cotton", SearchOptions(mode=mode))
        assert hits[0].file == "librispeech-1995-1837-0001.wav", mode


def test_lexical_is_accent_and_case_insensitive(sample_library):
    hits = lexical.query(sample_library.db, "CÓTTON", 5)
    assert hits and hits[0].file == "librispeech-1995-1837-0001.wav"


def test_unknown_mode_lists_the_valid_ones(sample_library, embedder):
    with pytest.raises(ConfigError, match="hybrid, dense, lexical"):
        search(sample_library, embedder, "x", SearchOptions(mode="psychic"))


def test_rrf_rewards_agreement_between_lists():
    def h(pid):
        return Hit(passage_id=pid, file_hash="f", file="f.wav", start=0, end=1, text=pid, score=0)

    fused = fuse([[h("a"), h("b"), h("c")], [h("c"), h("b"), h("d")]])
    # c: ranks 3 and 1; b: ranks 2 and 2; both beat a and d, which appear once.
    assert {x.passage_id for x in fused[:2]} == {"b", "c"}
    assert fused[0].score == pytest.approx(max(1 / 63 + 1 / 61, 2 / 62))
    assert {x.passage_id for x in fused} == {"a", "b", "c", "d"}


def _timed(pid, start, end, translated=False, file_hash="zh"):
    return Hit(passage_id=pid, file_hash=file_hash, file=f"{file_hash}.wav", start=start, end=end, text=pid,
               score=0, translated=translated)


def test_a_moment_is_returned_once_whichever_rendering_found_it():
    spoken, english = _timed("spoken", 0.4, 5.4), _timed("english", 0.4, 5.0, True)
    later, other_file = _timed("later", 13.0, 16.0, True), _timed("other", 0.0, 5.0, False, "en")
    next_passage = _timed("next", 4.9, 12.0)  # overlaps the rendering by a carried segment only
    assert one_per_moment([spoken, other_file, english, later, next_passage]) == \
        [spoken, other_file, later, next_passage]
    assert one_per_moment([english, spoken]) == [english]


def test_fusion_ranks_moments_so_two_renderings_found_by_two_lists_agree():
    """A Chinese clip found first by its characters (dense) and second by its English rendering
    (lexical) is one moment both lists found, ahead of passages each list found once."""
    chars, english = _timed("zh:0", 0.2, 3.64), _timed("zh:t0", 0.2, 3.8, True)
    es, es_english = _timed("es:0", 0.2, 24.5, file_hash="es"), _timed("es:t0", 0.2, 25.0, True, "es")
    dense = [chars, es_english, _timed("ja:0", 0.5, 4.6, file_hash="ja")]
    lexical_hits = [es, english, _timed("en:0", 1.7, 19.2, file_hash="en")]
    fused = fuse([dense, lexical_hits])
    assert [h.passage_id for h in fused[:2]] == ["zh:0", "es:t0"]
    assert fused[0].score == pytest.approx(1 / 61 + 1 / 62)
    assert len(fused) == 4


def test_phrase_length_counts_the_content_words_of_the_longest_run_in_order():
    q = lexical.tokens("the young man is called the world's fresh what?")
    assert lexical.phrase_length(q, lexical.tokens("Thou that art now the world's fresh ornament")) == 2
    assert lexical.phrase_length(q, lexical.tokens("fresh young world")) == 0  # the words, not in order
    assert lexical.phrase_length(q, lexical.tokens("is called the")) == 1  # "called" is the one content word
    assert lexical.phrase_length(q, lexical.tokens("the man who is")) == 0  # a run of stopwords only


def _hit(pid: str, text: str) -> Hit:
    return Hit(passage_id=pid, file_hash="f", file="f.wav", start=0, end=1, text=text, score=0)


def test_in_phrase_order_puts_the_longest_run_first_and_drops_passages_without_one():
    hits = [_hit("a", "paint the fresh world"), _hit("b", "the world's fresh ornament"),
            _hit("c", "called the world's fresh ornament")]
    assert [h.passage_id for h in in_phrase_order("who is called the world's fresh ornament?", hits)] == ["c", "b"]


def test_hybrid_breaks_a_tie_between_dense_and_lexical_by_the_question_s_wording(monkeypatch, sample_library):
    # Dense and lexical each rank the other's first passage second: rank fusion alone cannot choose.
    right = _hit("right", "only herald to the gaudy spring, thou that art now the world's fresh ornament")
    other = _hit("other", "a fresh start for the world of young men")
    monkeypatch.setattr(search_module, "_dense", lambda *a: [other, right])
    monkeypatch.setattr(search_module, "_lexical", lambda *a: [right, other])
    no_model = type("NoModel", (), {"embed_query": lambda self, q: None})()  # _dense is given, not searched
    hits = search(sample_library, no_model, "the young man is called the world's fresh what?",
                  SearchOptions(mode="hybrid"))
    assert [h.passage_id for h in hits] == ["right", "other"]


def test_exact_phrase_is_timed_by_its_words(sample_library):
    hits = exact(sample_library, "ask what you can do")
    assert [h.file for h in hits] == ["jfk-inaugural-1961-excerpt.flac"]
    h = hits[0]
    # "ask what you can do for your country" is the second clause, from about 7.5 s on.
    assert 6.5 < h.start < 9.0 and h.start < h.end <= 11.0 and h.end - h.start < 3.0


def test_exact_phrase_reads_word_times_from_the_index_not_the_transcripts(sample_library, monkeypatch):
    """At a million passages a common phrase is in thousands of recordings: their transcripts are not read."""
    before = exact(sample_library, "ask what you can do")
    monkeypatch.setattr(type(sample_library), "transcript", lambda *a: pytest.fail("a transcript was read"))
    assert exact(sample_library, "ask what you can do") == before and len(before) == 1
    assert "ask what you can do" in before[0].text.lower()


def test_exact_phrase_ignores_case_and_punctuation(sample_library):
    # "...can do for you, / ask what you can do..." also crosses a segment boundary.
    a = exact(sample_library, "FOR YOU ask what")
    assert len(a) == 1 and a[0].file == "jfk-inaugural-1961-excerpt.flac" and a[0].end - a[0].start < 4.0
    assert exact(sample_library, "ask what your country can do for the moon") == []


def test_cli_exact_json_has_the_hits_shape(run_cli, sample_library, monkeypatch):
    monkeypatch.setenv("EARMARK_LIBRARY", str(sample_library.root))
    code, out, _ = run_cli("search", "--exact", "fellow americans", "--json")
    hits = json.loads(out)["hits"]
    assert code == 0 and len(hits) == 1 and set(hits[0]) == {"file", "start", "end", "text", "score"}
    assert hits[0]["start"] < 3.0


def test_english_question_finds_spanish_speech_through_its_translation(spanish_library, embedder):
    """The Spanish clip is found by an English query, and the hit quotes English, cites Spanish times."""
    lib = spanish_library
    t = lib.transcript(lib.find("picovoice-leopard-test-es.wav").sha256)
    assert {s.language for s in t.segments} == {"es"} and t.translations
    assert "sand" in " ".join(s.text for s in t.translations).lower()
    hits = search(lib, embedder, "white sand", SearchOptions(k=3))
    assert hits[0].file == "picovoice-leopard-test-es.wav" and hits[0].translated
    assert 0.0 <= hits[0].start < hits[0].end <= 8.7


def test_langchain_retriever_returns_documents_with_times(sample_library, embedder):
    from langchain_core.documents import Document

    from pipeline.retriever import EarmarkRetriever

    docs = EarmarkRetriever(library=sample_library, embedder=embedder).invoke("ask not what your country can do")
    assert isinstance(docs[0], Document) and "country" in docs[0].page_content
    meta = docs[0].metadata
    assert meta["file"] == "jfk-inaugural-1961-excerpt.flac" and 0 <= meta["start"] < meta["end"] <= 11.0
    assert "speaker" in meta


def test_rerank_order_ignores_invented_numbers_and_keeps_forgotten_hits():
    from pipeline.rerank import by_order

    def h(pid):
        return Hit(passage_id=pid, file_hash="f", file="f.wav", start=0, end=1, text=pid, score=0)

    hits = [h("a"), h("b"), h("c"), h("d")]
    assert [x.passage_id for x in by_order(hits, [3, 9, 3, "x", 1])] == ["c", "a", "b", "d"]


def test_unknown_or_missing_reranker_is_a_clear_error(sample_library, embedder, monkeypatch):
    monkeypatch.delenv("EARMARK_CROSS_ENCODER", raising=False)
    with pytest.raises(ConfigError, match="none, llm, cross-encoder"):
        search(sample_library, embedder, "country", SearchOptions(rerank="magic"))
    with pytest.raises(ConfigError, match="EARMARK_CROSS_ENCODER"):
        search(sample_library, embedder, "country", SearchOptions(rerank="cross-encoder"))


def test_llm_rerank_runs_the_model_and_returns_its_order(sample_library, embedder, monkeypatch):
    from pipeline import rerank

    calls = []
    real_llm = rerank.RERANKERS["llm"]

    def spy(question, hits, llm=None):
        out = real_llm(question, hits, llm)  # the real packaged LLM
        calls.append(([h.passage_id for h in hits], [h.passage_id for h in out]))
        return out

    monkeypatch.setitem(rerank.RERANKERS, "llm", spy)
    question = "What was the first great sorrow of his life?"
    plain = search(sample_library, embedder, question, SearchOptions(k=4))
    ranked = search(sample_library, embedder, question, SearchOptions(k=4, rerank="llm"))
    assert len(calls) == 1 and calls[0][0] == [h.passage_id for h in plain]
    assert [h.passage_id for h in ranked] == calls[0][1]  # search returns the model's order
    assert sorted(h.passage_id for h in ranked) == sorted(h.passage_id for h in plain)


# ---------------------------------------------------------------- filters


def test_filters_by_file_glob_language_and_speaker(run_cli, spanish_library, sample_library, monkeypatch):
    def hits(library, *args):
        monkeypatch.setenv("EARMARK_LIBRARY", str(library.root))
        code, out, err = run_cli("search", *args, "--json")
        assert code == 0, err
        return json.loads(out)["hits"]

    everything = hits(spanish_library, "sand country cotton")
    assert {h["file"] for h in everything} >= {"picovoice-leopard-test-es.wav", "jfk-inaugural-1961-excerpt.flac"}
    assert {h["file"] for h in hits(spanish_library, "sand country cotton", "--file", "*.flac")} == \
        {"jfk-inaugural-1961-excerpt.flac"}
    assert {h["file"] for h in hits(spanish_library, "sand country cotton", "--language", "es")} == \
        {"picovoice-leopard-test-es.wav"}
    # Only passages where Diane has a turn, and none of the one-voice speeches.
    diane = hits(sample_library, "Chicago New Jersey", "--speaker", "Diane")
    assert diane and all("Diane: " in h["text"] for h in diane)


def _dated_copy(src, dest, **tags):
    """A copy of a recording re-encoded by ffmpeg with the given metadata tags."""
    import subprocess

    meta = [a for k, v in tags.items() for a in ("-metadata", f"{k}={v}")]
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), *meta, str(dest)], check=True)
    return dest


def test_recording_dates_come_from_metadata_else_the_file_s_time_and_filter_search(run_cli, tmp_path, monkeypatch):
    """A lawyer filters evidence by when it was recorded: the date the file's metadata gives (an MP4/M4A
    creation time, an ID3 or FLAC date), not when it was last copied; the file's time only without one."""
    import os

    from .conftest import SAMPLES

    folder = tmp_path / "in"
    folder.mkdir()
    _dated_copy(SAMPLES / "jfk-inaugural-1961-excerpt.flac", folder / "jfk.flac", date="1961-01-20")
    _dated_copy(SAMPLES / "librispeech-1995-1837-0001.wav", folder / "cotton.m4a",
                creation_time="2021-06-03T10:15:00Z")
    plain = _dated_copy(SAMPLES / "librispeech-1272-128104-0000.wav", folder / "quilter.wav")
    os.utime(plain, (1_577_880_000, 1_577_880_000))  # 2020-01-01 12:00 UTC
    library = tmp_path / "lib"
    monkeypatch.setenv("EARMARK_LIBRARY", str(library))
    assert run_cli("ingest", str(folder), "--no-diarize")[0] == 0
    code, out, _ = run_cli("status", "--json")
    dates = {r["file"]: (r["recorded_at"], r["recorded_from"]) for r in json.loads(out)["recordings"]}
    assert dates == {"jfk.flac": ("1961-01-20", "metadata: date"),
                     "cotton.m4a": ("2021-06-03T10:15:00+00:00", "metadata: creation_time"),
                     "quilter.wav": ("2020-01-01T12:00:00+00:00", "file modification time")}

    def files(*args):
        code, out, err = run_cli("search", "country cotton middle classes", "--json", *args)
        assert code == 0, err
        return {h["file"] for h in json.loads(out)["hits"]}
    assert files() == {"jfk.flac", "cotton.m4a", "quilter.wav"}
    assert files("--until", "1999-12-31") == {"jfk.flac"}
    assert files("--since", "2021-01-01") == {"cotton.m4a"}
    assert files("--since", "2020-01-01", "--until", "2020-01-01") == {"quilter.wav"}


def test_a_word_inside_unspaced_chinese_or_japanese_speech_is_found_and_timed(tmp_path, embedder):
    """Chinese and Japanese are written without spaces: "知識" (knowledge) is a word inside one long run
    of the sentence Whisper wrote, which a whole-run tokenizer never matches. Whisper wrote the Mandarin
    clip in traditional characters (廣州); its listener types simplified ones (广州)."""
    from pipeline.ingest import ingest
    from pipeline.store import Library
    from tests.conftest import real

    lib = Library(tmp_path / "cjk", embedder.name)
    ja, zh = "picovoice-leopard-test-ja.wav", "aishell1-BAC009S0724W0121.wav"
    assert not ingest(lib, embedder, [real(ja), real(zh)]).failed
    [hit] = exact(lib, "知識")
    # The sentence runs 0.5-4.6 s; the word sits in its second half, and spans a word or two.
    assert hit.file == ja and 1.5 < hit.start < hit.end < 4.7 and hit.end - hit.start < 1.5
    assert [h.file for h in lexical.query(lib.db, "知識", 5)] == [ja]
    # A phrase is the characters in order, not any of them: "識知" is nowhere.
    assert exact(lib, "識知") == [] and lexical.query(lib.db, "識知", 5) == []
    # "广州" (Guangzhou) opens the Mandarin sentence, in either script.
    for city in ("广州", "廣州"):
        [hit] = exact(lib, city)
        assert hit.file == zh and hit.start < 1.5 and hit.end - hit.start < 1.5
        assert lexical.query(lib.db, city, 5)[0].file == zh


def test_cli_says_whether_a_phrase_is_absent_or_nothing_is_indexed(run_cli, sample_library, tmp_path, monkeypatch):
    monkeypatch.setenv("EARMARK_LIBRARY", str(sample_library.root))
    code, out, _ = run_cli("search", "--exact", "wire transfer")
    indexed = len(sample_library.recordings())
    assert code == 0 and out.strip() == (f"no occurrence of 'wire transfer' in {indexed} recording(s) "
                                         "(case and punctuation ignored)")
    monkeypatch.setenv("EARMARK_LIBRARY", str(tmp_path / "empty"))
    code, out, _ = run_cli("search", "--exact", "wire transfer")
    assert code == 0 and "nothing is indexed yet" in out


def _lexical_index(passages: list[str]):
    """An in-memory lexical index of these passage texts (one recording), as the library keeps one."""
    import sqlite3

    from pipeline.records import Passage

    db = sqlite3.connect(":memory:")
    db.executescript(lexical.SCHEMA)
    lexical.replace_file(db, "h", [Passage(id=f"h:{i}", file_hash="h", file_name="big.wav", start=float(i),
                                           end=i + 1.0, text=t, segment_ids=(), language="en")
                                   for i, t in enumerate(passages)])
    return db


def test_a_common_word_is_not_a_reason_to_score_every_passage_yet_counts_in_the_scores():
    """'meeting' is in 1,800 of 3,000 passages: the candidates are the passages holding the query's
    other word, and 'meeting' still counts in their scores exactly as FTS5's bm25() counts it, so the
    ranking equals a search over every passage that holds either word."""
    import random

    rng = random.Random(0)
    filler = [f"word{i}" for i in range(300)]
    texts = []
    for i in range(3000):
        said = rng.choices(filler, k=rng.randint(5, 30))
        if i % 5 < 3:
            said += ["meeting"] * rng.randint(1, 3)
        if i % 75 == 0:
            said += ["budget"] * rng.randint(1, 2)
        if i % 2 == 0:
            said.append("project")
        rng.shuffle(said)
        texts.append(" ".join(said))
    db = _lexical_index(texts)
    rows, _ = lexical._stats(db)
    assert rows == 3000 and lexical._common(db, ["meeting", "budget"], rows) == ["meeting"]
    got = lexical.query(db, "the meeting budget", 10)
    every = db.execute("SELECT p.passage_id, -bm25(passages_fts) FROM passages_fts JOIN passages p "
                       "ON p.rowid = passages_fts.rowid WHERE passages_fts MATCH '\"meeting\" OR \"budget\"' "
                       "ORDER BY bm25(passages_fts) LIMIT 10").fetchall()
    assert [h.passage_id for h in got] == [pid for pid, _ in every]
    assert [h.score for h in got] == pytest.approx([s for _, s in every], rel=1e-9)
    # Common words only: the passages holding all of them; fewer than asked for, any of them.
    both = lexical.query(db, "meeting project", 5)
    assert len(both) == 5 and all({"meeting", "project"} <= set(h.text.split()) for h in both)
    assert len(lexical.query(db, "meeting project", 2500)) == 2400  # all that hold either (of 3,000)


@pytest.mark.parametrize("wide", [1, 10])
def test_a_filtered_dense_search_finds_what_chroma_s_own_filter_finds(sample_library, embedder, monkeypatch, wide):
    """PassageIndex.query first looks among the nearest passages of the whole library and keeps those the
    scope admits; with too few it asks Chroma to filter (WIDE 1: most scopes here; 10: none)."""
    from pipeline import vectors
    from pipeline.search import Scope

    monkeypatch.setattr(vectors, "WIDE", wide)
    filtered = []
    real = vectors.PassageIndex._query

    def counting(self, vector, k, where, where_document):
        filtered.append(bool(where or where_document))
        return real(self, vector, k, where, where_document)

    monkeypatch.setattr(vectors.PassageIndex, "_query", counting)
    scopes = [Scope.of(sample_library, SearchOptions(file="*.flac")), Scope.of(sample_library, SearchOptions(language="en")),
              Scope.of(sample_library, SearchOptions(file="pyannote-*", speaker="SPEAKER_2")),
              Scope.of(sample_library, SearchOptions(speaker="SPEAKER_1"))]
    for question in ("What did Kennedy ask Americans to do?", "the cotton harvest", "where does she live now"):
        vector = embedder.embed_query(question)
        for scope in scopes:
            where, where_document = scope.chroma()
            found = sample_library.index.query(vector, 3, where, where_document, scope.admits)
            chroma = sample_library.index.query(vector, 3, where, where_document)
            assert [h.passage_id for h in found] == [h.passage_id for h in chroma], (question, scope)
            assert all(scope.admits({"file_hash": h.file_hash, "language": "en"}, h.text) for h in found)
    assert filtered.count(False) == 12  # every search first looked without a filter
    fell_back = filtered.count(True) - 12  # (less the comparisons' own Chroma-filtered queries)
    assert (fell_back > 0) == (wide == 1)  # and asked Chroma to filter only when too few were kept
