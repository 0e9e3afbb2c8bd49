"""Word tokens as earmark compares them everywhere: case- and accent-folded letters and digits.

One tokenizer serves the lexical index, its queries, exact-phrase search and answer verification,
so what counts as "the same word" never differs between finding a passage and checking a citation.

Chinese and Japanese put no spaces between words, so a whole sentence of theirs is one unbroken run
of letters, one token to SQLite's unicode61 tokenizer: "知識" is never found inside "判断的知識が成立する".
Such a run is cut at the Unicode word boundaries of UAX #29 (the `regex` module's WORD flag, as
ICU and Lucene's standard tokenizer cut it): every ideograph and hiragana is a word of its own, a
katakana word stays whole, and a phrase of them is found as a phrase of tokens. Other scripts keep
their runs exactly as before (Korean writes spaces; UAX #29 would also join "don't" and "3.5").
Whisper often writes Mandarin in traditional characters ("廣州") where its listener types simplified
ones ("广州"): each ideograph is folded to its simplified form (OpenCC's t2s, one character at a time
so that a word alone and the same word in a sentence fold alike), as accents are folded in Latin.
"""

from __future__ import annotations

import functools
import re
import unicodedata

import regex

# Words too common to carry meaning on their own (English; other languages keep every word).
STOPWORDS = frozenset(
    "a an the of to in on at for and or but is are was were be been it its this that with as by from he she "
    "they we you i his her their our your what who whom where when which how why did do does said say says "
    "about there here not no so if then than into over".split())


_UNSPACED = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}]")
_WORD_BOUNDARY = regex.compile(r"\b", flags=regex.WORD | regex.V1)
_HAN = regex.compile(r"\p{Han}")


@functools.lru_cache(maxsize=1)
def _simplifier():
    import opencc

    return opencc.OpenCC("t2s")


@functools.lru_cache(maxsize=65536)
def _simplified(char: str) -> str:
    return _simplifier().convert(char)


def words(text: str) -> list[str]:
    """Lower-case, accent-free word tokens (letters and digits), a Chinese or Japanese run cut into
    its words (see above)."""
    found = _runs(text)
    if not _UNSPACED.search(text):  # most text: nothing to cut, so no pattern is run over each word
        return found
    return [w for run in found for w in _cut(run)]


def runs(text: str) -> list[list[str]]:
    """The tokens of each unbroken run of letters and digits: one token, or the words of a Chinese or
    Japanese run, which a query must find together, in order."""
    return [_cut(run) for run in _runs(text)]


def _runs(text: str) -> list[str]:
    """Unbroken runs of letters and digits, case- and accent-folded."""
    text = unicodedata.normalize("NFKD", text.casefold())
    return re.findall(r"\w+", "".join(c for c in text if not unicodedata.combining(c)))


def _cut(run: str) -> list[str]:
    """A run's words: itself, or a Chinese or Japanese run's words, its ideographs simplified."""
    if not _UNSPACED.search(run):
        return [run]
    run = _HAN.sub(lambda m: _simplified(m.group()), run)
    return [w for w in _WORD_BOUNDARY.split(run) if w]


def lone_letter(token: str) -> bool:
    """A single Latin (or other alphabetic) letter, which claims nothing on its own: what tokenising
    leaves of a possessive or a contraction ("people's" -> "people", "s"). A digit is a number, and a
    Chinese or Japanese character is a word."""
    return len(token) == 1 and not token.isdigit() and not _UNSPACED.match(token)
