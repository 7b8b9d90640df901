"""Captioning metrics of the `<caption>` text: BLEU@1, METEOR, ROUGE-L (the paper's Table 3).

Hypothesis: every `<caption>...</caption>` of the output, joined by a space
(none: the empty string, which scores 0). References: the record's
`captions` (a list of alternative reference texts, or one string); each
metric takes its best over the references. Per record in [0, 1]; the
summary reports means over records in percent.

  BLEU@1   nltk `sentence_bleu(weights=(1,))`: clipped unigram precision
           times the brevity penalty exp(1 - r / c) against the closest
           reference length r (c = hypothesis length).
  METEOR   nltk `meteor_score` (alpha 0.9, beta 3, gamma 0.5): exact, then
           Porter-stem matches. WordNet synonym matching is OFF: nltk needs
           its WordNet corpus, which no pip package ships and this
           environment cannot download, so scores never depend on which
           machine has it. Values are below METEOR-with-synonyms and differ
           from the coco-caption Java METEOR 1.5.
  ROUGE-L  `rouge-score` ROUGE-L F1 with Porter stemming (the scorer the
           free-form reward uses).

Tokens for BLEU and METEOR: lower-cased runs of a-z / 0-9 (punctuation
dropped, `man's` -> `man`, `s`), as rouge-score tokenizes.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence

from vtjax.errors import DataError
from vtjax.text import text_metrics

_CAPTION_RE = re.compile(r"<caption>(.*?)</caption>", re.DOTALL)
_TOKEN_RE = re.compile(r"[a-z0-9]+")
METRICS = ("BLEU-1", "METEOR", "ROUGE-L")


class _NoSynonyms:
    """A WordNet stand-in with no synsets: METEOR's synonym stage matches nothing."""

    @staticmethod
    def synsets(word: str) -> list:
        return []


def caption_text(output: str) -> str:
    """All `<caption>` contents of an output, stripped and joined by a space."""
    return " ".join(c.strip() for c in _CAPTION_RE.findall(output))


def tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text.lower())


def reference_captions(value, where: str) -> list[str]:
    """A record's `captions` (one string or a list of strings) -> non-empty list of references."""
    refs = [value] if isinstance(value, str) else list(value)
    if not refs or not all(isinstance(r, str) and r.strip() for r in refs):
        raise DataError(f"{where}: 'captions' must be a non-empty string or a list of them, got {value!r:.80}")
    return refs


def bleu1(references: Sequence[str], hypothesis: str) -> float:
    from nltk.translate.bleu_score import sentence_bleu

    hyp = tokens(hypothesis)
    if not hyp:
        return 0.0
    with warnings.catch_warnings():  # nltk warns when no unigram matches; that is a score of 0
        warnings.simplefilter("ignore")
        return float(sentence_bleu([tokens(r) for r in references], hyp, weights=(1.0,)))


def meteor(references: Sequence[str], hypothesis: str) -> float:
    from nltk.translate.meteor_score import meteor_score

    hyp = tokens(hypothesis)
    if not hyp:
        return 0.0
    return float(meteor_score([tokens(r) for r in references], hyp, wordnet=_NoSynonyms()))


def rouge_l(references: Sequence[str], hypothesis: str) -> float:
    return max(text_metrics.rouge_f(r, hypothesis)["rougeL"] for r in references)


def caption_scores(references: Sequence[str], hypothesis: str) -> dict[str, float]:
    """{"BLEU-1", "METEOR", "ROUGE-L"} of one hypothesis, each in [0, 1]."""
    return {"BLEU-1": bleu1(references, hypothesis), "METEOR": meteor(references, hypothesis),
            "ROUGE-L": rouge_l(references, hypothesis)}


def caption_metrics(per_record: Sequence[dict[str, float]]) -> dict[str, float]:
    """Means (percent) of `caption_scores` results, plus `count`."""
    out = {"count": float(len(per_record))}
    for name in METRICS:
        out[name] = 100.0 * sum(s[name] for s in per_record) / len(per_record) if per_record else float("nan")
    return out
