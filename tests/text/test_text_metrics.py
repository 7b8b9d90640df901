"""WER and stemmed ROUGE on hand-worked examples."""

import pytest

from vtjax.text import text_metrics


def test_wer_hand_worked():
    assert text_metrics.word_error_rate("a b c", "a c") == pytest.approx(1 / 3)  # one deletion
    assert text_metrics.word_error_rate("a b c", "a x b c y") == pytest.approx(2 / 3)  # two insertions
    assert text_metrics.word_error_rate("a b c d", "a b c d") == 0.0
    assert text_metrics.word_error_rate("", "") == 0.0
    assert text_metrics.word_error_rate("", "a b") == 2.0  # divided by max(1, 0 reference words)
    assert text_metrics.word_error_rate("k i t t e n", "s i t t i n g") == pytest.approx(3 / 6)  # 2 subs + 1 ins
    assert text_metrics.word_error_rate("a b", "") == 1.0  # two deletions
    assert text_metrics.word_error_rate("A b", "a b") == pytest.approx(1 / 2)  # case-sensitive, as Video-R1
    assert text_metrics.word_error_rate("a  b\n c", " a b c ") == 0.0  # any whitespace splits


def test_rouge_hand_worked():
    # ref "the cat sat on the mat" (6), hyp "the cat lay on the mat" (6):
    # unigrams: overlap the x2, cat, on, mat = 5 -> P = R = 5/6; bigrams (the cat) (on the) (the mat) of 5 -> 3/5;
    # LCS "the cat on the mat" = 5 -> 5/6.
    f = text_metrics.rouge_f("The cat sat on the mat.", "the cat lay on the mat")
    assert f == pytest.approx({"rouge1": 5 / 6, "rouge2": 3 / 5, "rougeL": 5 / 6})
    # Different lengths: ref "a b c d" hyp "b d e": R1 P=2/3 R=2/4 -> F=4/7; R2 0; LCS "b d" = 2 -> 4/7.
    assert text_metrics.rouge_mean_f("a b c d", "b d e") == pytest.approx((4 / 7 + 0 + 4 / 7) / 3)
    # Clipped counts: ref "a a b", hyp "a a a": unigram overlap min(2, 3) + 0 = 2 -> P 2/3, R 2/3.
    assert text_metrics.rouge_f("a a b", "a a a")["rouge1"] == pytest.approx(2 / 3)
    assert text_metrics.rouge_mean_f("", "x") == 0.0


def test_rouge_stems_words_longer_than_three_letters():
    # Porter stems: dogs -> dog, running -> run, jumped -> jump, classes -> class; "was" (3 letters) kept.
    assert text_metrics.rouge_mean_f("dog run", "dogs running") == 1.0
    assert text_metrics.rouge_mean_f("dog run", "dogs running", use_stemmer=False) == 0.0
    assert text_metrics.rouge_mean_f("the dog jumped", "The dogs jump!") == 1.0
    # "classes were" -> [class, were]; "class was" -> [class, was]: R1 1/2, R2 0, L 1/2.
    assert text_metrics.rouge_mean_f("classes were", "class was") == pytest.approx((1 / 2 + 0 + 1 / 2) / 3)
