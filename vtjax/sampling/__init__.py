"""Compiled sampling: prefill + while_loop decode with grouped rollouts."""

from vtjax.sampling.filters import choose_tokens, filter_logits
from vtjax.sampling.sampler import SamplingSettings, generate, left_pad

__all__ = ["SamplingSettings", "choose_tokens", "filter_logits", "generate", "left_pad"]
