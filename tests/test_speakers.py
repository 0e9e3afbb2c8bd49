"""Speaker turns from RTTM/STM label segments; names reach passages and answers."""

import json
import shutil

import pytest

from pipeline.records import Segment, Word
from pipeline.speakers import SpeakerByDeed, SpeakerByOrder, by_order, label, named, read_turns, speaker_at

from .conftest import real


def test_rttm_and_stm_are_read(tmp_path):
    rttm = tmp_path / "a.rttm"
    rttm.write_text("SPEAKER a 1 6.690 0.430 <NA> <NA> spk1 <NA> <NA>\nSPEAKER a 1 7.5 1.0 <NA> <NA> spk2 <NA> <NA>\n")
    stm = tmp_path / "a.stm"
    stm.write_text("a 1 Diane 6.68 7.16 Hello?\na 1 Sheila 7.634 8.155 Hello?\n")
    assert [(t.start, round(t.end, 2), t.speaker) for t in read_turns(rttm)] == [(6.69, 7.12, "spk1"), (7.5, 8.5, "spk2")]
    assert [t.speaker for t in read_turns(stm)] == ["Diane", "Sheila"]


def test_a_segment_is_split_where_the_speaker_changes():
    words = (Word(0.0, 0.5, " Hello.", 0.9), Word(0.6, 1.0, " Hi", 0.9), Word(1.0, 1.4, " there.", 0.9))
    seg = Segment(id=0, start=0.0, end=1.4, text="Hello. Hi there.", words=words, language="en",
                  avg_logprob=-0.1, no_speech_prob=0.0, compression_ratio=1.0)
    turns = read_turns_from([(0.0, 0.55, "A"), (0.58, 2.0, "B")])
    out = label([seg], turns)
    assert [(s.speaker, s.text, s.start, s.end, s.id) for s in out] == [
        ("A", "Hello.", 0.0, 0.5, 0), ("B", "Hi there.", 0.6, 1.4, 1)]
    assert speaker_at(turns, 5.0, 6.0) is None  # far from any turn: unknown, not guessed


def read_turns_from(triples):
    from pipeline.speakers import Turn

    return [Turn(a, b, c) for a, b, c in triples]


def test_phone_call_sidecar_names_reach_transcript_and_answers(run_cli, tmp_path):
    call = tmp_path / "call.wav"
    shutil.copy(real("pyannote-sample-phonecall-2spk.wav"), call)
    shutil.copy(real("pyannote-sample-phonecall-2spk.stm"), tmp_path / "call.stm")
    code, out, _ = run_cli("-q", "ingest", call)
    assert code == 0 and "speakers from call.stm" in out
    code, out, _ = run_cli("transcript", "call.wav", "--json")
    segs = json.loads(out)["segments"]
    chicago = [s for s in segs if "chicago" in s["text"].lower() and s["start"] < 18]
    assert chicago and chicago[0]["speaker"] == "Sheila"
    assert {s["speaker"] for s in segs} == {"Diane", "Sheila"}
    # Names are in the passages the model reads, one line per turn (answer quality is eval's job).
    code, out, _ = run_cli("search", "Texas Chicago", "--json")
    assert "\nSheila: " in "\n" + json.loads(out)["hits"][0]["text"]
    code, out, _ = run_cli("ask", "Which of the two callers is in Texas?", "--json")
    answer = json.loads(out)
    assert answer["found"] and 13.5 <= answer["citations"][0]["start"] <= answer["citations"][0]["end"] <= 19.0


def test_speakers_given_later_relabel_without_retranscribing(run_cli, tmp_path, monkeypatch):
    call = tmp_path / "call.wav"
    shutil.copy(real("pyannote-sample-phonecall-2spk.wav"), call)
    run_cli("-q", "ingest", call)
    code, out, _ = run_cli("transcript", "call.wav", "--json")
    assert {s["speaker"] for s in json.loads(out)["segments"]} == {"SPEAKER_1", "SPEAKER_2"}  # found by voice
    from pipeline import ingest as ingest_mod

    monkeypatch.setattr(ingest_mod, "transcribe_piece", lambda *a, **k: pytest.fail("re-transcribed"))
    code, out, _ = run_cli("-q", "ingest", call, "--speakers", real("pyannote-sample-phonecall-2spk.rttm"))
    assert code == 0 and "1 ingested" in out
    code, out, _ = run_cli("transcript", "call.wav", "--json")
    assert {s["speaker"] for s in json.loads(out)["segments"]} == {"speaker90", "speaker91"}


def test_speakers_file_for_several_recordings_is_refused(run_cli, clips_dir):
    code, _, err = run_cli("ingest", clips_dir, "--speakers", real("pyannote-sample-phonecall-2spk.rttm"))
    assert code == 2 and "beside each" in err


def test_one_voice_is_labelled_but_not_written_into_passages(run_cli):
    from .conftest import SAMPLES

    code, out, _ = run_cli("-q", "ingest", SAMPLES / "jfk-inaugural-1961-excerpt.flac")
    assert code == 0 and "speakers found: 1" in out
    code, out, _ = run_cli("transcript", "jfk-inaugural-1961-excerpt.flac", "--json")
    assert {s["speaker"] for s in json.loads(out)["segments"]} == {"SPEAKER_1"}
    code, out, _ = run_cli("search", "ask not what your country", "--json")
    assert "SPEAKER_1" not in json.loads(out)["hits"][0]["text"]


@pytest.mark.parametrize("question, n", [
    ("What did the second speaker say about Chicago?", 2), ("What did the 3rd voice ask for?", 3),
    ("What did speaker 2 say?", 2), ("What did speaker two say?", 2),
    ("What did the last person to speak say?", -1), ("What did the first speaker promise?", 1),
    ("What did the speaker say about Chicago?", None), ("Who was the first to mention it?", None),
    ("What was the second thing the speaker said?", None), ("Which speaker spoke 2 times?", None),
    ("When did she meet the speaker two weeks ago?", None), ("Did the speaker 3 years ago agree?", None),
])
def test_a_speaker_named_by_order_of_speaking_is_recognised(question, n):
    asked = by_order(question)
    assert (asked.n if asked else None) == n


def test_the_speaker_named_by_order_is_found_by_first_appearance():
    segs = [Segment(i, t, t + 1, "x", (), "en", -0.2, 0.0, 1.0, speaker=who)
            for i, (t, who) in enumerate([(0, "Diane"), (1, "Sheila"), (2, "Diane"), (3, None), (4, "Ann")])]
    assert [by_order(f"What did the {w} speaker say?").of(segs) for w in ("first", "second", "third", "last")] \
        == ["Diane", "Sheila", "Ann", "Ann"]
    assert by_order("What did the fourth speaker say?").of(segs) is None


@pytest.mark.parametrize("question, deed", [
    ("What did the participant who agreed with the LCD suggestion say people would find easier?",
     "agreed with the LCD suggestion"),
    ("What did the speaker who described a section that opens up say it would give access to?",
     "described a section that opens up"),
    ("What did the caller who said she was in Texas say they call her?", "said she was in Texas"),
    ("What did the woman that grew up in Chicago think of New Jersey?", "grew up in Chicago"),
    ("What did the speaker say about Chicago?", None), ("Who said she was in Texas?", None),
    ("What did the second speaker say about Chicago?", None),  # named by order, not by deed
    ("Where does the woman who grew up in Chicago live?", None),  # not what someone said
])
def test_a_speaker_named_by_what_they_said_is_recognised(question, deed):
    asked = named(question)
    assert (asked.deed if isinstance(asked, SpeakerByDeed) else None) == deed
    if deed:
        assert asked.phrase.endswith(deed) and asked.phrase in question
        assert asked.naming(question, "Sheila") == question.replace(asked.phrase, "Sheila")
        assert asked.naming(question) == question
    assert isinstance(named("What did the second speaker say?"), SpeakerByOrder)
