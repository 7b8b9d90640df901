"""Word error rate and ROUGE-1/2/L F-measures, written out small (no external scorer).

Tokenisation for ROUGE: lower-case, every run of characters other than
a-z and 0-9 is a separator (so punctuation and case never matter). No
stemming: "jumps" and "jump" are different words here, unlike scorers that
run the Porter stemmer. WER splits on whitespace and is case-sensitive.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def rouge_tokens(text: str) -> list[str]:
    """Lower-cased alphanumeric words."""
    return [w for w in _NON_ALNUM.split(text.lower()) if w]


def _f1(overlap: int, n_ref: int, n_hyp: int) -> float:
    if overlap == 0 or n_ref == 0 or n_hyp == 0:
        return 0.0
    p, r = overlap / n_hyp, overlap / n_ref
    return 2 * p * r / (p + r)


def rouge_n(reference: Sequence[str], hypothesis: Sequence[str], n: int) -> float:
    """ROUGE-N F1: clipped n-gram overlap counts."""
    ref = Counter(tuple(reference[i : i + n]) for i in range(len(reference) - n + 1))
    hyp = Counter(tuple(hypothesis[i : i + n]) for i in range(len(hypothesis) - n + 1))
    overlap = sum((ref & hyp).values())
    return _f1(overlap, sum(ref.values()), sum(hyp.values()))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (O(len(a) * len(b)) dynamic programme)."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(reference: Sequence[str], hypothesis: Sequence[str]) -> float:
    """ROUGE-L F1 from the LCS (sentence level, beta = 1)."""
    return _f1(lcs_length(reference, hypothesis), len(reference), len(hypothesis))


def rouge_mean_f(reference: str, hypothesis: str) -> float:
    """Mean of ROUGE-1, ROUGE-2 and ROUGE-L F1 (Video-R1's free-form reward)."""
    ref, hyp = rouge_tokens(reference), rouge_tokens(hypothesis)
    return (rouge_n(ref, hyp, 1) + rouge_n(ref, hyp, 2) + rouge_l(ref, hyp)) / 3.0


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
    """Word edit distance / number of reference words (1.0 for an empty reference and any hypothesis)."""
    ref, hyp = reference.split(), hypothesis.split()
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)
