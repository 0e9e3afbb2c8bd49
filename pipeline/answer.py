"""Stage 7: answer a question from retrieved passages, citing `file @ mm:ss–mm:ss`, or say nothing found.

The model sees numbered passages and must reply with JSON naming one passage number and a short
answer (small models cite reliably only when their output is constrained). The code, never the model,
turns the number into a file and times: a number that was not given is dropped, the citation is
narrowed from the passage to the segment that carries the answer, and an answer whose words and
meaning are not found in its cited span is withheld (found: false) rather than shown. A withheld
answer gets one second reading, without the passage it came from.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import custody, prompts, speakers, verify
from .citations import citation, narrow
from .config import AnswerOptions, EmbedOptions
from .embed import Embedder
from .embed import load as load_embedder
from .errors import ModelReplyError
from .llm import calling, chat_model, parse_json, structured, whole_fields
from .records import Answer, Hit, Segment, during, indexed, mmss
from .search import SearchOptions, search
from .sentences import Span, sentences
from .store import Library
from .translation import Translator

log = logging.getLogger(__name__)

NOT_FOUND = "I found nothing in the recordings that answers this."


# How many times the model may read the passages: once, and once more without the passage its first
# answer came from if that answer is not borne out. On the eval set the second reading happened for 4
# questions of 60, and turned one withheld answer into a right one.
READINGS = 2

Times = tuple[tuple[float, float], ...]  # (start, end) seconds: speech hidden from the model


def answer_schema(n_passages: int) -> dict:
    """JSON schema of the model's reply: the passage number first, then the answer."""
    return {
        "type": "object",
        "properties": {
            "passage": {"type": "integer", "minimum": 0, "maximum": n_passages},
            "answer": {"type": "string"},
        },
        "required": ["passage", "answer"],
    }


def ask(library: Library, embedder: Embedder, question: str, options: AnswerOptions = AnswerOptions(),
        search_options: SearchOptions | None = None, on_token: Callable[[str], None] | None = None) -> Answer:
    """Answer a question from the library, with verified citations, or say that nothing was found."""
    custody.log_question(library, question)  # only if the library or EARMARK_AUDIT_QUESTIONS asks for it
    search_options = replace(search_options or SearchOptions(), k=options.k, llm=options, for_model=True)
    query = speakers.read(question, search_options.by_speaker)  # the question is parsed here only
    answer = _ask(library, embedder, query, options, search_options, on_token)
    if not answer.found and isinstance(query.speaker, speakers.SpeakerByDeed):
        # A speaker named by a deed is the model's reading of one passage, and may be the wrong one
        # ("the person who raised the LCD idea" read as the one who took it up): if no one is found,
        # or their words answer nothing, the question is read again as if it named no one.
        log.info("nothing found in the words of the speaker who %s; reading the question plainly", query.speaker.deed)
        answer = _ask(library, embedder, query.plainly(), options, search_options, None)
    return answer


def _ask(library: Library, embedder: Embedder, query: speakers.Query, options: AnswerOptions,
         search_options: SearchOptions, on_token: Callable[[str], None] | None) -> Answer:
    question = query.text
    hits = search(library, embedder, query, search_options)
    # "What did the second speaker say ...?": search found the passages where that speaker speaks; each
    # is read as that speaker's words only, and judged on what is asked ("what did someone say ...?").
    speaker_of = {h.file_hash: h.speaker for h in hits} if query.speaker else {}  # (search found their label)
    topic = query.topic
    # Relevance and support are judged by the support model (MiniLM by default, whose thresholds these
    # are), whatever embedder found the passages.
    judge = load_embedder(EmbedOptions(model=options.support_model))
    translator = Translator(library, options) if options.translate else None
    # Speech that addresses an AI ("note to the assistant: ...") is never shown to the model, nor judged
    # for relevance, nor cited; the rest of its passage is ordinary speech (hidden: times, by passage).
    hidden = {h.passage_id: instructions(library, h) for h in hits}
    hits = [c for c in (_without(library, h, hidden[h.passage_id]) for h in hits) if c is not None]
    hits = relevant(judge, topic, hits, options.min_relevance,
                    english=lambda h: _english(library, h, translator, hidden[h.passage_id]))
    if not hits:
        return Answer(question, NOT_FOUND, False)
    # Each passage is read and checked against the question as it stands in its recording: "where does
    # the first speaker live?" is "where does Diane live?" on the call, "... SPEAKER_1 ..." elsewhere.
    about = {h.file_hash: query.in_recording(speaker_of.get(h.file_hash)) for h in hits}
    focused = [focus(library, judge, about[h.file_hash], h, speaker_of.get(h.file_hash), translator,
                     hidden[h.passage_id]) for h in hits]
    focused = [(h, spans) for h, spans in focused if spans]
    if not focused:
        return Answer(question, NOT_FOUND, False)
    focused = closest_first(judge, focused, about)
    shown = list(range(len(focused)))  # indices into focused of the passages the model reads
    for reading in range(READINGS):
        reply = _generate(question, [focused[i][0] for i in shown], options, on_token if reading == 0 else None)
        if "answer" not in reply:  # cut off before its answer was whole (_generate): nothing to check
            break
        n, text = reply.get("passage"), str(reply["answer"]).strip()
        if not text:
            if reading == 0:
                return Answer(question, NOT_FOUND, False)
            break
        picked = shown[n - 1] if isinstance(n, int) and 1 <= n <= len(shown) else None
        # The model's passage number is a hint: its passage is checked first, then the others shown.
        # A citation only ever points at a passage the model was given, and only where it is verified;
        # its number is the passage's in the first reading, whichever reading answered.
        for i in sorted(shown, key=lambda i: i != picked):
            hit, spans = focused[i]
            cited = narrow(library, judge, i + 1, hit, spans, about[hit.file_hash], text)
            if cited is not None:
                return Answer(question, text, True, (cited,))
        if picked is None or len(shown) == 1:
            break
        # The passage the model answered from does not bear its answer out: it drew the model away from
        # the others, so they are read again without it ("what did the first speaker say about symbols?"
        # answered from the passage that begins "Actually, that just raises a point").
        log.info("answer %r from passage %d not borne out; reading the others again", text, picked + 1)
        shown = [i for i in shown if i != picked]
    return quote(library, question, focused, about)


def quote(library: Library, question: str, focused: list[tuple[Hit, list[Span]]],
          about: dict[str, str] | None = None) -> Answer:
    """When the model's answer is not borne out: the sentence that plainly answers the question, quoted.

    A sentence qualifies only if it holds nearly all of the question's content (verify.MIN_QUOTE_OVERLAP),
    so a question the recordings do not answer still gets "nothing found". ``about`` gives the question
    as it stands in each recording (by file hash), where it differs.
    """
    about = about or {}
    best = max(((verify.question_overlap(about.get(hit.file_hash, question), s.evidence), n, hit, s)
                for n, (hit, spans) in enumerate(focused, 1) for s in spans), key=lambda x: x[0])
    overlap, n, hit, span = best
    if overlap < verify.MIN_QUOTE_OVERLAP:
        return Answer(question, NOT_FOUND, False)
    quoted = citation(library, n, hit, [span])
    return Answer(question, f"The recording says: \u201c{quoted.text}\u201d", True, (quoted,))


# Sentences of a passage shown to the model: a small model answers better from a few relevant
# sentences than from a minute of transcript with ten unrelated ones. Swept on dev
# (eval/results/sweeps): 2 and 3 lose citations borne out, 6 answers two unanswerable questions.
FOCUS_SENTENCES = 4
MIN_SENTENCE_WORDS = 3


def focus(library: Library, embedder: Embedder, question: str, hit: Hit, speaker: str | None = None,
          translator: Translator | None = None, hidden: Times = ()) -> tuple[Hit, list[Span]]:
    """The hit cut down to its sentences most relevant to the question, most relevant first; with
    ``speaker``, to that speaker's sentences only (a question about what one speaker said).

    Small models lean on what they read first, so relevance, not time, orders the sentences. Each
    sentence carries its neighbours and, in a non-English recording, the same moment in the other
    rendering (the English translation of spoken words, or the spoken words of a translation): a model
    may answer in English from the words spoken, and the check must be able to see that. With a
    ``translator``, a foreign sentence also carries the answering model's English rendering of its
    spoken words, which the model reads in place of Whisper's translation. Sentences in ``hidden``
    times (`instructions`: speech addressed to an AI) are left out, in either rendering.
    """
    transcript = library.transcript(hit.file_hash)
    pool, other = ((transcript.translations, transcript.segments) if hit.translated
                   else (transcript.segments, transcript.translations))
    every = unhidden(sentences(indexed(pool, hit.start, hit.end)), hidden)
    # Only the other rendering's segments near these sentences: a long recording has thousands.
    other = indexed(other, min((s.start for s in every), default=0.0),
                    max((s.end for s in every), default=0.0))
    beside = unhidden(sentences(other), hidden) if hidden else other  # what _parallel may show
    # A recording's name says what it is about ("capitan-veneno"), as its neighbours do for a sentence.
    name = " ".join(w for w in re.split(r"[\W_]+", Path(hit.file).stem) if w)
    every = [replace(s, context=" ".join([name] + [x.evidence for x in every[max(0, k - 1):k + 2] if x is not s]),
                     **_parallel(s, beside)) for k, s in enumerate(every)]
    every = [replace(s, foreign=hit.translated or bool(s.parallel)) for s in every]
    renderings: list[tuple[Span, str]] = []
    if translator is not None and any(s.foreign for s in every):
        # The model renders each sentence spoken once, as the relevance check did (`_english`): a
        # translation's sentences are cut apart from the speech, and rendering the spoken words under
        # each of them rendered the same speech twice, in two wordings, side by side.
        spoken = unhidden(sentences(other), hidden) if hit.translated else every
        renderings = list(zip(spoken, translator.english(hit.file_hash, [s.text for s in spoken])))
        every = [_rendered(s, [(sp, e) for sp, e in renderings if e and during([sp], s.start, s.end)])
                 if s.foreign else s for s in every]
    if speaker is not None:  # (their neighbours, whoever said them, stay their context)
        theirs = [s for s in transcript.segments if s.speaker == speaker]
        # A translation carries no speakers: a sentence of it is theirs if they speak at that time.
        every = [s for s in every if s.speaker == speaker or s.speaker is None and during(theirs, s.start, s.end)]
    # Fragments ("Hello.", "So I") answer nothing but distract a small model; keep them only if alone.
    spans = [s for s in every if len(s.text.split()) >= MIN_SENTENCE_WORDS] or every
    if len(spans) > FOCUS_SENTENCES:
        spans = [spans[i] for i in np.argsort(-_closeness(embedder, question, spans))[:FOCUS_SENTENCES]]
    if not spans:
        return hit, []
    start, end = min(s.start for s in spans), max(s.end for s in spans)
    chosen, spoken = list(spans), []
    if any(s.foreign for s in spans):
        # Foreign speech is shown in every segment spoken in that time, each sentence of it rendered,
        # and any of those sentences may be cited.
        spoken = indexed(transcript.segments, start, end)
        if hidden:  # (shown sentence by sentence, so that only the words addressed to a model go)
            spoken = unhidden(sentences(spoken), hidden)
        start, end = min([start] + [s.start for s in spoken]), max([end] + [s.end for s in spoken])
        spans += [s for s in during(every, start, end) if s not in spans]
    shown = _shown(hit, chosen, spoken, start, end, renderings)
    return replace(hit, start=start, end=end, text=shown), spans


def closest_first(judge: Embedder, focused: list[tuple[Hit, list[Span]]],
                  about: dict[str, str]) -> list[tuple[Hit, list[Span]]]:
    """The focused passages, the one whose shown sentences come closest to the question first.

    Small models lean on what they read first: as within a passage the closest sentence comes first
    (`focus`), so among passages, whatever rank search gave the whole passage. ``about`` is the question
    as it reads in each recording (by file hash)."""
    closest = [float(_closeness(judge, about[h.file_hash], spans).max()) for h, spans in focused]
    return [focused[i] for i in sorted(range(len(focused)), key=lambda i: -closest[i])]


def _closeness(embedder: Embedder, question: str, spans: list[Span]) -> np.ndarray:
    """How close each sentence is to the question: its similarity plus the share of the question's stems
    it holds."""
    vecs = embedder.embed([question] + [s.said for s in spans])
    return vecs[1:] @ vecs[0] + np.array([verify.question_overlap(question, s.attests) for s in spans])


def _shown(hit: Hit, spans: list[Span], spoken: list[Segment], start: float, end: float,
           renderings: list[tuple[Span, str]] = ()) -> str:
    """The passage as the model reads it. Foreign speech is shown in the words spoken (the indexed
    ``spoken`` segments from start to end, as `focus` chose them), then in a machine translation: the
    model's own rendering of each sentence spoken in that time where there is one (translation.py),
    else Whisper's, which garbles facts ("a same halberd" for "Leichenhalle") that the model can read,
    and copy, from the original."""
    if not any(s.foreign for s in spans):
        return "\n".join(s.evidence for s in spans)  # English speech
    english = " ".join(e for sp, e in renderings if e and during([sp], start, end)) or \
        ("\n".join(s.evidence for s in spans) if hit.translated else
         " ".join(dict.fromkeys(s.parallel for s in spans if s.parallel)))
    said = "\n".join(Span(s.start, s.end, s.text, s.speaker).evidence for s in spoken or spans)
    return f"{said}\n(machine translation: {english})"


def _rendered(span: Span, renderings: list[tuple[Span, str]]) -> Span:
    """The span with the model's renderings of the spoken sentences under it; the time those
    sentences cover joins the time its other rendering covers (what a citation of it may quote)."""
    if not renderings:
        return span
    times = [t for sp, _ in renderings for t in (sp.start, sp.end)] + list(span.parallel_span or ())
    return replace(span, rendered=" ".join(e for _, e in renderings), parallel_span=(min(times), max(times)))


def _parallel(span: Span, other: list[Segment]) -> dict:
    """The other rendering's segments that overlap a sentence: their text and their time range."""
    overlapping = during(other, span.start, span.end)
    if not overlapping:
        return {}
    return {"parallel": " ".join(s.text for s in overlapping),
            "parallel_span": (min(s.start for s in overlapping), max(s.end for s in overlapping))}


def instructions(library: Library, hit: Hit) -> Times:
    """The times in a hit's passage where the speech addresses an AI (prompt injection), sentence by
    sentence, in the words spoken or in their English translation (so an instruction spoken in Spanish
    is found by its rendering, "Note for the assistant: ..."). The prompt says passages are quoted
    material too; this is the second line of defence. Those words stay searchable. The sentence is the
    unit: where Whisper runs talk and instruction into one sentence (commas, no full stop), the talk
    is hidden with it."""
    transcript = library.transcript(hit.file_hash)
    times = []
    for pool in (transcript.segments, transcript.translations):
        said = sentences(indexed(pool, hit.start, hit.end))
        times += [(s.start, s.end) for s, flagged in zip(said, verify.addressed([s.text for s in said])) if flagged]
    if times:
        log.warning("%s @ %s speaks to an AI model (prompt injection?); not shown to the answerer",
                    hit.file, ", ".join(f"{mmss(a)}-{mmss(b)}" for a, b in times))
    return tuple(times)


def unhidden(items: list, hidden: Times) -> list:
    """The items (sentences, segments) that overlap none of the hidden times."""
    return [s for s in items if not any(s.end > a and s.start < b for a, b in hidden)]


def _without(library: Library, hit: Hit, hidden: Times) -> Hit | None:
    """The hit with the hidden sentences taken out of its text (what relevance is judged on), or None
    if nothing else is left. A hit with nothing hidden is returned as it is."""
    if not hidden:
        return hit
    transcript = library.transcript(hit.file_hash)
    pool = transcript.translations if hit.translated else transcript.segments
    kept = unhidden(sentences(indexed(pool, hit.start, hit.end)), hidden)
    return replace(hit, text=" ".join(s.evidence for s in kept)) if kept else None


# How far below the best passage's similarity a passage may be and still be shown (see `relevant`).
# Swept on dev (eval/results/sweeps): less loses answers; more, or none, answers the same from 7%
# longer prompts (the model's reading time).
RELEVANCE_SPREAD = 0.2


def relevant(embedder: Embedder, question: str, hits: list[Hit], floor: float,
             english: Callable[[Hit], list[str]] = lambda h: []) -> list[Hit]:
    """Hits worth showing the model: similar enough to the question, and near the best one.

    Similarity is the embedder's cosine, whatever search mode ranked the hits, taken on the hit's text
    or on its English renderings (``english``), whichever is closest: the judge reads English, and a
    multilingual search finds Spanish speech by its Spanish words. A small model shown a weakly
    related passage beside the right one borrows words from it, so passages far below the best are
    left out; if even the best is below the floor, nothing is relevant.
    """
    if not hits:
        return []
    renderings = [(i, text) for i, h in enumerate(hits) for text in english(h) if text]
    vecs = embedder.embed([question] + [h.text for h in hits] + [text for _, text in renderings])
    sims = vecs[1:1 + len(hits)] @ vecs[0]
    for (i, _), sim in zip(renderings, vecs[1 + len(hits):] @ vecs[0]):
        sims[i] = max(sims[i], sim)
    best = float(sims.max())
    if best < floor:
        log.info("best passage %.3f below relevance floor %.2f", best, floor)
        return []
    return [h for h, s in zip(hits, sims) if s >= max(floor, best - RELEVANCE_SPREAD)]


def _english(library: Library, hit: Hit, translator: Translator | None = None, hidden: Times = ()) -> list[str]:
    """The English renderings of a hit's time that are not its own text: Whisper's translation of a
    spoken hit, and the answering model's rendering of the foreign words spoken (with a translator),
    without the ``hidden`` sentences."""
    transcript = library.transcript(hit.file_hash)
    translation = indexed(transcript.translations, hit.start, hit.end)
    out = [] if hit.translated else \
        [" ".join(s.text for s in (unhidden(sentences(translation), hidden) if hidden else translation))]
    if translator is not None:
        spoken = indexed(transcript.segments, hit.start, hit.end)
        if any(s.language != "en" for s in spoken):
            said = unhidden(sentences(spoken), hidden)
            out.append(" ".join(translator.english(hit.file_hash, [s.text for s in said])) if said else "")
    return [text for text in out if text.strip()]


def _generate(question: str, hits: list[Hit], options: AnswerOptions,
              on_token: Callable[[str], None] | None) -> dict:
    messages = prompts.load("answer").format_messages(passages=prompts.passages(hits), question=question)
    model = structured(chat_model(options), options.llm, answer_schema(len(hits)))
    parts = []
    # A model server's client times out only between two pieces; EARMARK_LLM_TIMEOUT bounds the answer.
    deadline = time.monotonic() + options.timeout
    with calling(options):
        for chunk in model.stream(messages):
            if options.llm != "llama-cpp" and time.monotonic() > deadline:
                raise TimeoutError(f"still writing after {options.timeout:g} s")
            parts.append(chunk.content)
            if on_token:
                on_token(chunk.content)
    text = "".join(parts)
    try:
        return parse_json(text)
    except ModelReplyError:
        # A reply cut off at max_tokens (a small model that runs on) or one that is not JSON at all: the
        # fields it wrote whole are read, and an answer it did not finish is no answer (_ask quotes).
        reply = whole_fields(text)
        log.warning("the model's reply stopped before it was whole (max_tokens %d): %r; read as %s",
                    options.max_tokens, text[-80:], reply)
        return reply
