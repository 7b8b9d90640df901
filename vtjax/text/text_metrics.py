"""Word error rate (`jiwer`) and mean ROUGE-1/2/L F1 (Google's `rouge-score`), as Video-R1 scores them.

WER: words are whitespace-split and case-sensitive; the word edit distance
is divided by max(1, number of reference words), so an empty reference
gives the hypothesis length (Video-R1's definition; `jiwer` refuses an empty
reference, so that case is answered here).

ROUGE: `rouge_score.rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"],
use_stemmer=True)`, as Video-R1's free-form reward calls it. Its tokenizer
lower-cases, treats every character other than a-z and 0-9 as a separator
(so non-Latin text has no tokens and scores 0) and Porter-stems words of
more than 3 letters: "dogs running" and "dog run" score 1.0.
"""

from __future__ import annotations

import functools

import jiwer

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


@functools.cache
def _scorer(use_stemmer: bool):
    from rouge_score import rouge_scorer  # imported on first use: it loads nltk (~2 s)

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)


def rouge_f(reference: str, hypothesis: str, use_stemmer: bool = True) -> dict[str, float]:
    """{"rouge1", "rouge2", "rougeL": F1} of `hypothesis` against `reference`."""
    scores = _scorer(use_stemmer).score(reference, hypothesis)
    return {name: float(scores[name].fmeasure) for name in ROUGE_TYPES}


def rouge_mean_f(reference: str, hypothesis: str, use_stemmer: bool = True) -> float:
    """Mean of ROUGE-1, ROUGE-2 and ROUGE-L F1 (Video-R1's free-form reward)."""
    return sum(rouge_f(reference, hypothesis, use_stemmer).values()) / len(ROUGE_TYPES)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word edit distance / max(1, number of reference words); may exceed 1."""
    ref, hyp = reference.split(), hypothesis.split()
    if not ref:
        return float(len(hyp))  # every hypothesis word an insertion, over max(1, 0)
    if not hyp:
        return 1.0  # every reference word deleted
    return float(jiwer.wer(" ".join(ref), " ".join(hyp)))
