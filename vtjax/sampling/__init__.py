"""Compiled sampling: prefill + while_loop decode with grouped rollouts."""

from vtjax.sampling.filters import choose_tokens, filter_logits
from vtjax.sampling.sampler import (PromptBatch, SamplingSettings, generate, left_pad, programs, prompt_batch, sample,
                                    sampling_settings)

__all__ = ["PromptBatch", "SamplingSettings", "choose_tokens", "filter_logits", "generate", "left_pad", "programs",
           "prompt_batch", "sample", "sampling_settings"]
