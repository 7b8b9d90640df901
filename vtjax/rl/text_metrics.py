"""Word error rate (written here) and mean ROUGE-1/2/L F1 (Google's `rouge-score`), as Video-R1 scores them.

WER: words are whitespace-split and case-sensitive; the word edit distance
is divided by max(1, number of reference words), so an empty reference
gives the hypothesis length (Video-R1's definition).

ROUGE: `rouge_score.rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"],
use_stemmer=True)`, as Video-R1's free-form reward calls it. Its tokenizer
lower-cases, treats every character other than a-z and 0-9 as a separator
(so non-Latin text has no tokens and scores 0) and Porter-stems words of
more than 3 letters: "dogs running" and "dog run" score 1.0.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

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


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance between two word sequences (substitution, insertion, deletion cost 1)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        cur = [i]
        for j, y in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word edit distance / max(1, number of reference words); may exceed 1."""
    ref, hyp = reference.split(), hypothesis.split()
    return edit_distance(ref, hyp) / max(1, len(ref))
