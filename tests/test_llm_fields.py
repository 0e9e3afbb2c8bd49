"""A JSON reply to a flat schema is written field by field (llm._fields): the keys are read, not
generated, and the values are the model's own. Real model: the point is what it writes and how many
steps it takes to write it."""

import json

import pytest

from pipeline import llm, prompts
from pipeline.answer import answer_schema
from pipeline.config import AnswerOptions

KENNEDY_PASSAGES = ("[1] jfk-inaugural-1961-excerpt.flac 00:03-00:11: And so, my fellow Americans, ask not what "
                    "your country can do for you, ask what you can do for your country.\n\n"
                    "[2] other.wav 00:00-00:05: Der Hund bellt laut.")
KENNEDY = prompts.load("answer").format_messages(passages=KENNEDY_PASSAGES,
                                                 question="What did Kennedy ask Americans to do?")


def _pieces(schema: dict, messages=KENNEDY, **bind) -> list[str]:
    options = AnswerOptions()
    return [c.content for c in llm.structured(llm.chat_model(options), options.llm, schema).bind(**bind).stream(messages)]


def test_the_keys_are_read_and_the_values_written_as_under_the_whole_schema(monkeypatch):
    fast = _pieces(answer_schema(2))
    assert fast[0] == '{"passage":'  # one piece: read with the prompt, not generated token by token
    assert '"answer":' in [p.strip() for p in fast]
    monkeypatch.setattr(llm, "flat_fields", lambda schema: None)  # the whole-object grammar, as before
    whole = _pieces(answer_schema(2))
    assert json.loads("".join(fast)) == json.loads("".join(whole))
    assert json.loads("".join(fast))["passage"] == 1
    assert "ask what you can do for your country" in json.loads("".join(fast))["answer"].lower()
    assert len(fast) <= len(whole) - 5  # '{"', 'pass', 'age', '":' and ' "', 'answer', '":' read in two pieces


def test_a_choice_of_strings_is_kept_to_the_choices():
    schema = {"type": "object", "properties": {"speaker": {"type": "string", "enum": ["SPEAKER_1", "SPEAKER_2"]}},
              "required": ["speaker"]}
    reply = json.loads("".join(_pieces(schema)))
    assert reply["speaker"] in ("SPEAKER_1", "SPEAKER_2")


def test_other_schemas_are_written_whole_and_a_reply_cut_short_is_not_json():
    # The reranker's request, as rerank._llm sends it: a list is not a flat field.
    order = {"type": "object", "properties": {"order": {
        "type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 2}, "maxItems": 2}}, "required": ["order"]}
    rerank = prompts.load("rerank").format_messages(
        passages=KENNEDY_PASSAGES, question="What did Kennedy ask Americans to do?")
    assert llm.flat_fields(order) is None and llm.flat_fields(answer_schema(3)) == list(answer_schema(3)["properties"].items())
    pieces = _pieces(order, rerank)
    assert pieces[0] != '{"order":'  # generated token by token, as llama-cpp-python writes a whole object
    assert set(json.loads("".join(pieces))["order"]) <= {1, 2}
    cut = "".join(_pieces(answer_schema(2), max_tokens=4))
    with pytest.raises(llm.ModelReplyError):
        llm.parse_json(cut)
    assert llm.whole_fields(cut) == {"passage": 1}  # the answer it had begun is left out, not closed


@pytest.mark.parametrize("reply, whole", [
    ('{"passage": 2, "answer": "It was the cot', {"passage": 2}),
    ('{"passage": 1', {}),  # it may have been 12
    ('{ "passage" : 3 ,\n "answer": "a \\"b\\" c", "more": [1, 2', {"passage": 3, "answer": 'a "b" c'}),
    ('{"passage": 2, "answer": "x"}', {"passage": 2, "answer": "x"}),
    ("I cannot answer that.", {}),
])
def test_the_fields_of_a_reply_written_whole_are_read_and_a_field_cut_short_is_not(reply, whole):
    assert llm.whole_fields(reply) == whole


def test_a_reranking_or_a_speaker_reading_cut_off_is_gone_without_and_search_goes_on():
    """Real model, 3 tokens to write in: the reranker's reply and the speaker finder's stop before their
    JSON closes. Neither is needed for an answer: search's order stands and no speaker is named."""
    from pipeline import rerank, speakers
    from pipeline.records import Hit
    from pipeline.sentences import Span

    cut = AnswerOptions(max_tokens=3)
    hits = [Hit("b:0", "b", "other.wav", 0, 5, "Der Hund bellt laut.", 1.0),
            Hit("a:0", "a", "jfk.flac", 0, 9, "Ask what you can do for your country.", 0.9)]
    with pytest.raises(llm.ModelReplyError):  # (what reached search before)
        llm.reply_json("rerank", {"type": "object", "properties": {"order": {"type": "array", "items": {"type": "integer"}}},
                                  "required": ["order"]}, cut, passages=prompts.passages(hits), question="What did Kennedy ask?")
    assert rerank._llm("What did Kennedy ask?", hits, cut) == hits
    deed = speakers.named("What did the person who asked about the country say?")
    spans = [Span(0, 3, "Ask what you can do for your country.", "SPEAKER_1"), Span(3, 6, "Der Hund bellt laut.", "SPEAKER_2")]
    assert deed.of(spans, cut) is None
