"""English renderings of foreign speech, written by the answering LLM when a question needs them and
kept in the library.

Whisper base's own translation (task="translate", made at ingest for search) garbles much of what
it renders: "A quick check is not possible to learn from an officer." for "Uma raposa velha não
consegue aprender nenhum ofício", "The Chinese government is in charge of ..." for a Guangzhou
real-estate report. The answering model (Qwen2.5 by default) renders the same transcribed words far
better, and the relevance floor and the support checks, which read English (MiniLM), need a rendering
they can judge. It costs about a second a sentence on two CPU cores, too slow for ingest (issue 5's
10x realtime), so a sentence is rendered the first time a question's passages hold it, and the
rendering is stored in the catalog by recording, model and source text: each is paid for once, and
a re-transcribed sentence (new text) is never given an old rendering.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from . import prompts
from .config import AnswerOptions
from .store import Library

log = logging.getLogger(__name__)


class Translator:
    """English renderings of transcribed foreign sentences, by the answering LLM, cached in a library."""

    def __init__(self, library: Library, options: AnswerOptions):
        self.library = library
        self.options = options
        self.model = f"{options.llm}:{options.model or 'default'}"
        self._chat = None

    def english(self, file_hash: str, texts: Sequence[str]) -> list[str]:
        """The English rendering of each text (foreign sentences of one recording), in order."""
        wanted = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
        known = self.library.renderings(file_hash, self.model, wanted)
        for text in (t for t in wanted if t not in known):
            known[text] = self._render(text)
            self.library.add_rendering(file_hash, self.model, text, known[text])
        return [known.get(t.strip(), "") for t in texts]

    def _render(self, text: str) -> str:
        from .llm import calling, chat_model

        if self._chat is None:
            self._chat = chat_model(self.options)
        messages = prompts.load("translate").format_messages(text=text)
        with calling(self.options):
            english = str(self._chat.invoke(messages).content).strip()
        log.info("rendered %r as %r", text[:60], english[:60])
        return english
