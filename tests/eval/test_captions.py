"""Captioning metrics (BLEU@1, METEOR, ROUGE-L) against hand-worked values."""

import math

import pytest

from vtjax.errors import DataError
from vtjax.eval import captions

REF = ["a man is walking his dog"]
HYP = "a man walks a dog"


def test_bleu1_hand_worked():
    # hyp a man walks a dog (5), ref 6 words: clipped unigrams a (1 of 2), man, dog -> 3/5; BP exp(1 - 6/5)
    assert captions.bleu1(REF, HYP) == pytest.approx(0.6 * math.exp(-0.2))
    assert captions.bleu1(REF, "a man is walking his dog") == pytest.approx(1.0)
    assert captions.bleu1(["the cat", "a man is here"], "a man") == pytest.approx(1.0)  # closest ref length 2
    assert captions.bleu1(REF, "") == 0.0 and captions.bleu1(REF, "zebra") == 0.0


def test_meteor_hand_worked():
    # exact a, man, dog + stem walks~walking: m = 4, P = 4/5, R = 4/6; Fmean = PR / (0.9 P + 0.1 R);
    # matches (hyp->ref) 1->1, 2->3, 3->0, 4->5 form 4 chunks: penalty 0.5 * (4/4)^3 = 0.5
    p, r = 4 / 5, 4 / 6
    assert captions.meteor(REF, HYP) == pytest.approx(0.5 * p * r / (0.9 * p + 0.1 * r))
    # identical 6 words: one chunk, penalty 0.5 * (1/6)^3
    assert captions.meteor(["the cat sat on the mat"], "The cat sat on the mat.") == pytest.approx(1 - 0.5 / 216)
    # Porter stems only: dogs~dog, running~runs (run); 1 chunk of 2 -> 1 - 0.5 * (1/2)^3
    assert captions.meteor(["dog runs"], "dogs running") == pytest.approx(0.9375)
    # no synonyms (no WordNet): puppy and dog do not match
    assert captions.meteor(["a dog"], "the puppy") == 0.0


def test_rouge_l_hand_worked():
    # stemmed tokens: hyp a man walk a dog, ref a man is walk his dog; LCS 4 -> F = 2 (4/5)(4/6) / (4/5 + 4/6)
    assert captions.rouge_l(REF, HYP) == pytest.approx(8 / 11)
    assert captions.rouge_l(["zzz", REF[0]], HYP) == pytest.approx(8 / 11)  # best reference


def test_caption_text_and_references():
    out = "<time>00:01-00:03</time><caption> a man </caption><think>x</think><caption>walks</caption><answer>A"
    assert captions.caption_text(out) == "a man walks"
    assert captions.caption_text("<caption>cut off") == ""
    assert captions.reference_captions("one", "r") == ["one"]
    with pytest.raises(DataError, match="'captions' must be"):
        captions.reference_captions(["ok", ""], "r")
    m = captions.caption_metrics([captions.caption_scores(REF, HYP), captions.caption_scores(REF, "")])
    assert m["count"] == 2 and m["ROUGE-L"] == pytest.approx(100 * (8 / 11) / 2)
