"""Word tokens as earmark compares them everywhere: case- and accent-folded letters and digits.

One tokenizer serves the lexical index's queries, exact-phrase search and answer verification, so
what counts as "the same word" never differs between finding a passage and checking a citation.
"""

from __future__ import annotations

import re
import unicodedata

# Words too common to carry meaning on their own (English; other languages keep every word).
STOPWORDS = frozenset(
    "a an the of to in on at for and or but is are was were be been it its this that with as by from he she "
    "they we you i his her their our your what who whom where when which how why did do does said say says "
    "about there here not no so if then than into over".split())


def words(text: str) -> list[str]:
    """Lower-case, accent-free word tokens (letters and digits), as FTS5's unicode61 tokenizer sees them."""
    text = unicodedata.normalize("NFKD", text.casefold())
    return re.findall(r"\w+", "".join(c for c in text if not unicodedata.combining(c)))
