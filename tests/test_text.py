"""The one tokenizer that search, the lexical index and verification share."""

from pipeline.text import lone_letter, runs, words


def test_chinese_and_japanese_runs_are_cut_into_words_and_other_scripts_are_not():
    # The dakuten is folded like an accent, and a traditional character to its simplified form (識 to 识)...
    assert words("判断的知識が") == ["判", "断", "的", "知", "识", "か"]
    assert runs("廣州市、佛地產") == [["广", "州", "市"], ["佛", "地", "产"]]
    # ... one character at a time, so a word folds alike alone and in a sentence.
    assert words("廣州") == words("广州") and words("乾隆") == words("乾") + words("隆")
    assert words("ワシントンに") == ["ワシントン", "に"]  # a katakana word stays whole
    assert words("Don't ask: 3.5 MÁLAGA") == ["don", "t", "ask", "3", "5", "malaga"]
    assert words("그는 길을") == words("그는") + words("길을") and len(words("그는 길을")) == 2


def test_a_lone_letter_claims_nothing_but_a_digit_or_an_ideograph_does():
    assert lone_letter("s") and not lone_letter("7") and not lone_letter("知") and not lone_letter("ab")
