"""Metrics for earmark's evaluation: retrieval, answers, transcription, latency. Pure functions.

Shapes (issue 3). A question is a dict ``{"id", "question", "answerable", "gold": [{"file", "start",
"end"}], "answer_any": [...], "answer_all"?: [...], "lang", "kind"?, "speaker"?}``. A search result is
``{"hits": [{"file", "start", "end", "text", "score"}]}`` (a bare list of hits is accepted too). An ask
result is ``{"question", "answer", "found", "citations": [{"n", "file", "start", "end", "text"}]}``.
Times are seconds; ``file`` is the basename as ingested.

A runner calls the aggregates directly::

    retrieval_metrics(questions, results_by_qid)          # hit@k, MRR, nDCG@10 over answerable qs
    answer_metrics(questions, answers_by_qid, durations)  # accuracy, abstention, citation quality
    pooled_error_rates([wer_cer(ref, hyp, lang) ...])     # WER/CER per language from summed counts
    latency_summary(seconds)                              # p50 / p95
    words_in_gaps(words, manifest["gaps"])                # hallucinated words in a stitched archive

Each returns plain dicts (JSON-ready) with a ``per_question`` list where that applies, and ``by_kind``
breakdowns keyed by the question's ``kind``. Nothing here loads a model; jiwer and whisper's text
normalisers are imported only when a WER is computed.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections import defaultdict
from pathlib import PurePath
from typing import Iterable, Mapping, Sequence

import numpy as np

#: Seconds added to each side of a gold span before testing overlap.
WIDEN = 2.0
#: Citations may end this far past the recording's duration (decoders disagree by a few frames).
DURATION_SLACK = 0.5
#: Languages written without spaces: WER is computed over characters, as whisper's own evaluation does.
UNSPACED_LANGS = frozenset({"zh", "ja", "yue", "th", "lo", "my"})


# ---------------------------------------------------------------- retrieval

def _basename(file: str) -> str:
    return PurePath(str(file)).name


def span_matches(span: Mapping, gold_span: Mapping, widen: float = WIDEN) -> bool:
    """True if ``span`` is in ``gold_span``'s file and [start, end] meets [g.start - widen, g.end + widen].

    Closed intervals: a span that ends exactly at ``g.start - widen`` still matches.
    """
    if _basename(span["file"]) != _basename(gold_span["file"]):
        return False
    return span["start"] <= gold_span["end"] + widen and span["end"] >= gold_span["start"] - widen


def is_hit(hit: Mapping, gold: Sequence[Mapping], widen: float = WIDEN) -> bool:
    """True if ``hit`` matches any gold span: same file, and its span overlaps the gold span widened
    by ``widen`` seconds on each side (see ``span_matches``)."""
    return any(span_matches(hit, g, widen) for g in gold)


def _hits(result) -> list[Mapping]:
    """Accept ``{"hits": [...]}``, a bare list of hits, or None (no result: no hits)."""
    if result is None:
        return []
    return list(result["hits"] if isinstance(result, Mapping) else result)


def first_hit_rank(hits: Sequence[Mapping], gold: Sequence[Mapping], widen: float = WIDEN) -> int | None:
    """1-based rank of the first hit that ``is_hit``; None if no hit matches."""
    for rank, hit in enumerate(hits, start=1):
        if is_hit(hit, gold, widen):
            return rank
    return None


def hit_at_k(hits: Sequence[Mapping], gold: Sequence[Mapping], k: int, widen: float = WIDEN) -> float:
    """1.0 if any of the first ``k`` hits ``is_hit``, else 0.0."""
    rank = first_hit_rank(hits[:k], gold, widen)
    return 1.0 if rank is not None else 0.0


def reciprocal_rank(hits: Sequence[Mapping], gold: Sequence[Mapping], widen: float = WIDEN) -> float:
    """1 / rank of the first hit that ``is_hit`` (over all returned hits), 0.0 if none does."""
    rank = first_hit_rank(hits, gold, widen)
    return 1.0 / rank if rank is not None else 0.0


def ndcg_at_k(hits: Sequence[Mapping], gold: Sequence[Mapping], k: int = 10, widen: float = WIDEN) -> float:
    """Binary nDCG@k: DCG = sum over ranks i <= k of rel_i / log2(i + 1); nDCG = DCG / IDCG.

    rel_i = 1 if hit i ``is_hit`` a gold span that no higher-ranked hit has already been credited for
    (each gold span is credited once, greedily, to the earliest hit matching it), else 0. IDCG = DCG of
    min(k, len(gold)) ones at ranks 1.. . Crediting each gold span once keeps nDCG in [0, 1]: with plain
    ``rel_i = is_hit``, two neighbouring chunks overlapping one gold span would score above 1, and a
    ranking that misses rank 1 could tie a perfect one.
    """
    if not gold:
        return 0.0
    credited: set[int] = set()
    dcg = 0.0
    for i, hit in enumerate(hits[:k], start=1):
        new = next((j for j, g in enumerate(gold) if j not in credited and span_matches(hit, g, widen)), None)
        if new is not None:
            credited.add(new)
            dcg += 1.0 / math.log2(i + 1)
    idcg = sum(1.0 / math.log2(i + 1) for i in range(1, min(k, len(gold)) + 1))
    return dcg / idcg


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return float(np.mean(values)) if values else None


def _by_kind(rows: Sequence[dict], keys: Sequence[str]) -> dict[str, dict]:
    """Mean of each metric in ``keys`` per question kind (rows carry "kind")."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row.get("kind") or "unspecified"].append(row)
    return {kind: {"n": len(g), **{key: _mean(r[key] for r in g if r[key] is not None) for key in keys}}
            for kind, g in sorted(groups.items())}


def retrieval_metrics(questions: Sequence[Mapping], results_by_qid: Mapping[str, object],
                      ks: Sequence[int] = (1, 3, 5, 10), ndcg_k: int = 10, widen: float = WIDEN) -> dict:
    """Means of hit@k (each k in ``ks``), MRR and nDCG@``ndcg_k`` over the answerable questions.

    A question with no entry in ``results_by_qid`` counts as a search that returned nothing (all zeros).
    Unanswerable questions have no gold span and are skipped.
    """
    rows = []
    for q in questions:
        if not q.get("answerable", True):
            continue
        hits, gold = _hits(results_by_qid.get(q["id"])), q["gold"]
        row = {"id": q["id"], "kind": q.get("kind"), "rank": first_hit_rank(hits, gold, widen),
               **{f"hit@{k}": hit_at_k(hits, gold, k, widen) for k in ks},
               "rr": reciprocal_rank(hits, gold, widen),
               f"ndcg@{ndcg_k}": ndcg_at_k(hits, gold, ndcg_k, widen)}
        rows.append(row)
    keys = [f"hit@{k}" for k in ks] + ["rr", f"ndcg@{ndcg_k}"]
    summary = {key: _mean(r[key] for r in rows) for key in keys}
    summary["mrr"] = summary.pop("rr")
    return {"n": len(rows), **summary, "by_kind": _by_kind(rows, keys), "per_question": rows}


# ---------------------------------------------------------------- answers

def fold(text: str) -> str:
    """Fold text for answer matching: NFKD, combining marks dropped, casefolded, every run of
    non-alphanumeric characters turned into one space ("Málaga!" -> "malaga")."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.sub(r"[\W_]+", " ", stripped.casefold()).split())


def answer_matches(q: Mapping, answer_text: str) -> bool:
    """True if the folded answer contains any folded ``answer_any`` string (when given) and every
    ``answer_all`` string (when given). Substring match, so keep expected strings distinctive."""
    text = fold(answer_text or "")
    any_ok = not q.get("answer_any") or any(fold(a) in text for a in q["answer_any"])
    all_ok = all(fold(a) in text for a in q.get("answer_all") or [])
    return any_ok and all_ok


def answer_correct(q: Mapping, ans: Mapping | None) -> bool:
    """Answerable: ``found`` is true and ``answer_matches``. Unanswerable: ``found`` is false and there
    are no citations. A missing answer (None) is never correct."""
    if ans is None:
        return False
    if q.get("answerable", True):
        return bool(ans.get("found")) and answer_matches(q, ans.get("answer", ""))
    return not ans.get("found") and not ans.get("citations")


def citation_valid(c: Mapping, durations: Mapping[str, float], slack: float = DURATION_SLACK) -> bool:
    """True if the cited file is a known recording and 0 <= start < end <= duration + ``slack``."""
    duration = durations.get(_basename(c.get("file", "")))
    if duration is None:
        return False
    return 0.0 <= c["start"] < c["end"] <= duration + slack


def citation_supported(c: Mapping, gold: Sequence[Mapping], widen: float = WIDEN) -> bool:
    """True if the cited span overlaps a gold span widened by ``widen`` s (the same test as ``is_hit``)."""
    return is_hit(c, gold, widen)


def timestamp_error(c: Mapping, gold: Sequence[Mapping], widen: float = WIDEN) -> float | None:
    """|cited start - gold start| for the nearest gold span the citation is supported by; None if none."""
    errors = [abs(c["start"] - g["start"]) for g in gold if span_matches(c, g, widen)]
    return min(errors) if errors else None


def _answer_row(q: Mapping, ans: Mapping | None, durations: Mapping[str, float], widen: float) -> dict:
    """Per-question answer facts that ``answer_metrics`` aggregates."""
    cites = list((ans or {}).get("citations") or [])
    gold = q.get("gold") or []
    supported = [citation_supported(c, gold, widen) for c in cites]
    errors = [timestamp_error(c, gold, widen) for c in cites]
    return {"id": q["id"], "kind": q.get("kind"), "answerable": q.get("answerable", True),
            "missing": ans is None, "found": bool((ans or {}).get("found")),
            "correct": answer_correct(q, ans), "n_citations": len(cites),
            "n_valid": sum(citation_valid(c, durations) for c in cites),
            "n_supported": sum(supported), "all_supported": bool(cites) and all(supported),
            "timestamp_errors": [e for e in errors if e is not None]}


def interval(outcomes: Iterable[bool], confidence: float = 0.95) -> list[float] | None:
    """The Wilson score interval [low, high] of a share of successes (None without outcomes).

    A share over a few dozen questions is a rough estimate: 31 right of 47 is 0.66, but anything from
    0.52 to 0.78 would give that count one time in twenty. Wilson's interval stays inside [0, 1] and
    holds its coverage for small counts and for shares at 0 or 1 (8 of 8), where the normal one fails.
    """
    from scipy.stats import binomtest

    outcomes = list(outcomes)
    if not outcomes:
        return None
    ci = binomtest(sum(map(bool, outcomes)), len(outcomes)).proportion_ci(confidence, method="wilson")
    return [float(ci.low), float(ci.high)]


def answer_metrics(questions: Sequence[Mapping], answers_by_qid: Mapping[str, Mapping],
                   durations: Mapping[str, float], widen: float = WIDEN) -> dict:
    """Answer quality over a question set; see the keys' definitions below.

    - accuracy / accuracy_answerable / accuracy_unanswerable: share ``answer_correct``.
    - abstention_rate: share of unanswerable questions answered with ``found`` false.
    - false_abstention_rate: share of answerable questions answered with ``found`` false.
    - citation_validity: valid citations / all citations, all questions (``citation_valid``).
    - citation_support: supported citations / all citations, answerable questions.
    - fully_supported: share of answerable questions with >= 1 citation whose every citation is supported.
    - timestamp_error_*: over every supported citation of an answerable question (``timestamp_error``).
    - interval95: the 95% Wilson interval (``interval``) of each accuracy and of the abstention rate.
    A missing answer counts as not found, uncited and incorrect.
    """
    rows = [_answer_row(q, answers_by_qid.get(q["id"]), durations, widen) for q in questions]
    ans_rows = [r for r in rows if r["answerable"]]
    una_rows = [r for r in rows if not r["answerable"]]
    cited = [r for r in ans_rows if r["n_citations"]]
    n_cites = sum(r["n_citations"] for r in rows)
    n_ans_cites = sum(r["n_citations"] for r in ans_rows)
    errors = [e for r in ans_rows for e in r["timestamp_errors"]]
    return {
        "n": len(rows), "n_answerable": len(ans_rows), "n_unanswerable": len(una_rows),
        "missing": sum(r["missing"] for r in rows),
        "accuracy": _mean(r["correct"] for r in rows),
        "accuracy_answerable": _mean(r["correct"] for r in ans_rows),
        "accuracy_unanswerable": _mean(r["correct"] for r in una_rows),
        "abstention_rate": _mean(not r["found"] for r in una_rows),
        "false_abstention_rate": _mean(not r["found"] for r in ans_rows),
        "citation_validity": sum(r["n_valid"] for r in rows) / n_cites if n_cites else None,
        "citation_support": sum(r["n_supported"] for r in ans_rows) / n_ans_cites if n_ans_cites else None,
        "fully_supported": _mean(r["all_supported"] for r in cited),
        "timestamp_error_mean": _mean(errors),
        "timestamp_error_p50": percentile(errors, 50),
        "timestamp_error_p95": percentile(errors, 95),
        "interval95": {"accuracy": interval(r["correct"] for r in rows),
                       "accuracy_answerable": interval(r["correct"] for r in ans_rows),
                       "accuracy_unanswerable": interval(r["correct"] for r in una_rows),
                       "abstention_rate": interval(not r["found"] for r in una_rows)},
        "by_kind": _by_kind(rows, ["correct"]),
        "per_question": rows,
    }


# ---------------------------------------------------------------- transcription

@functools.lru_cache(maxsize=None)
def _normalizer(lang: str):
    """Whisper's own text normalisers (imported lazily: importing ``whisper`` pulls in torch)."""
    from whisper.normalizers import BasicTextNormalizer, EnglishTextNormalizer

    if lang == "en":
        return EnglishTextNormalizer()
    return BasicTextNormalizer(split_letters=lang in UNSPACED_LANGS)


def normalize_text(text: str, lang: str) -> str:
    """Whisper's normaliser for ``lang``: EnglishTextNormalizer for en, BasicTextNormalizer otherwise,
    with ``split_letters=True`` (one grapheme cluster per "word") for ``UNSPACED_LANGS``."""
    return " ".join(_normalizer(lang)(text or "").split())


def wer_cer(ref: str, hyp: str, lang: str) -> dict:
    """WER and CER of ``hyp`` against ``ref`` after whisper's normaliser for ``lang``, with counts.

    Both texts go through ``normalize_text``. WER: jiwer word edit distance / reference words; for
    ``UNSPACED_LANGS`` (zh, ja, ...) the "words" are grapheme clusters (BasicTextNormalizer with
    split_letters=True), so WER is in effect a CER there; Korean is written with spaces and keeps word
    WER. CER: jiwer character edit distance / reference characters on the same normalised text, spaces
    collapsed to one (and removed for unspaced languages, where they carry no meaning). Traditional and
    simplified Chinese characters differ, so a zh hypothesis in the other script counts as errors.

    Returns ``{"lang", "wer", "cer", "word_errors", "ref_words", "char_errors", "ref_chars",
    "substitutions", "deletions", "insertions"}`` (the last three are word-level); an empty reference
    gives ratios of None and counts every hypothesis unit as an insertion.
    """
    import jiwer  # the eval extra; not needed for retrieval or answer metrics

    ref_w, hyp_w = normalize_text(ref, lang), normalize_text(hyp, lang)
    ref_n, hyp_n = ref_w, hyp_w
    if lang in UNSPACED_LANGS:
        ref_n, hyp_n = ref_w.replace(" ", ""), hyp_w.replace(" ", "")
    row = {"lang": lang}
    if not ref_w:
        row.update(wer=None, cer=None, word_errors=len(hyp_w.split()), ref_words=0,
                   char_errors=len(hyp_n), ref_chars=0, substitutions=0, deletions=0,
                   insertions=len(hyp_w.split()))
        return row
    words = jiwer.process_words(ref_w, hyp_w)
    chars = jiwer.process_characters(ref_n, hyp_n)
    word_errors = words.substitutions + words.deletions + words.insertions
    char_errors = chars.substitutions + chars.deletions + chars.insertions
    row.update(wer=words.wer, cer=chars.cer, word_errors=word_errors, ref_words=len(ref_w.split()),
               char_errors=char_errors, ref_chars=len(ref_n), substitutions=words.substitutions,
               deletions=words.deletions, insertions=words.insertions)
    return row


def pooled_error_rates(rows: Iterable[Mapping], key: str = "lang") -> dict[str, dict]:
    """Per-``key`` (default language) WER and CER from summed error and reference counts, plus "all".

    Pooling counts weights each file by its length; averaging per-file ratios would let a 4-second
    clip weigh as much as a 70-second one. "all" adds the units as counted, i.e. characters for
    ``UNSPACED_LANGS``: read it beside the per-language rows, not instead of them.
    """
    sums: dict[str, dict] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        for group in (row[key], "all"):
            for field in ("word_errors", "ref_words", "char_errors", "ref_chars"):
                sums[group][field] += row[field]
            sums[group]["files"] += 1
    return {group: {**s, "wer": s["word_errors"] / s["ref_words"] if s["ref_words"] else None,
                    "cer": s["char_errors"] / s["ref_chars"] if s["ref_chars"] else None}
            for group, s in ((g, dict(v)) for g, v in sums.items())}


def words_in_gaps(items: Iterable[Mapping], gaps: Sequence[Mapping]) -> int:
    """Count words of transcript ``items`` ({"start", "end", "text"}) whose midpoint lies inside a gap.

    Gaps are stitched-archive spans that hold no speech (``{"start", "end", ...}``), so any word there
    was hallucinated. Pass word-level items for an exact count; with segments, a whole segment's words
    count when its midpoint is in a gap (an approximation).
    """
    count = 0
    for item in items:
        mid = (item["start"] + item["end"]) / 2
        if any(g["start"] <= mid < g["end"] for g in gaps):
            count += len(str(item.get("text", "")).split())
    return count


# ---------------------------------------------------------------- latency

def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (numpy's linear interpolation); None for no values."""
    values = list(values)
    return float(np.percentile(values, q)) if values else None


def latency_summary(seconds: Sequence[float]) -> dict:
    """``{"n", "p50", "p95", "p99", "mean", "max"}`` of a list of latencies (in whatever unit they come)."""
    values = list(seconds)
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "p99": percentile(values, 99), "mean": _mean(values), "max": max(values) if values else None}
