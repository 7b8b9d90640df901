"""Test-side helpers: a tiny random transformers Qwen2.5-VL built from a vtjax config, and inputs for it."""

from __future__ import annotations

import numpy as np
import torch
from transformers import Qwen2_5_VLConfig as HFConfig
from transformers import Qwen2_5_VLForConditionalGeneration

from vtjax.convert import hf_to_params
from vtjax.models.qwen2_5_vl import Qwen25VLConfig, abstract_params


def build_hf_model(config: Qwen25VLConfig, seed: int = 0, attn: str = "eager"):
    """A random float32 transformers model with the same architecture as ``config``.

    Weights are drawn with a larger std than the init so every component matters in the logits.
    """
    torch.manual_seed(seed)
    hf_config = HFConfig(**config.to_hf_dict())
    hf_config._attn_implementation = attn
    hf_config.vision_config._attn_implementation = attn
    model = Qwen2_5_VLForConditionalGeneration(hf_config).eval().float()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "norm1" in name or "norm2" in name or "ln_q" in name \
                    or "layernorm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.05 * torch.randn_like(p))
    return model


def params_from_hf(config: Qwen25VLConfig, model) -> dict:
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    if config.text.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    return hf_to_params(config, state, abstract_params(config))


def vision_run(config: Qwen25VLConfig, kind: str, grid) -> list[int]:
    """<|vision_start|> + the expanded pad tokens for one image/video grid + <|vision_end|>."""
    token = config.image_token_id if kind == "image" else config.video_token_id
    t, h, w = grid
    return [config.vision_start_token_id] + [token] * (t * h * w // config.vision.merge_unit) \
        + [config.vision_end_token_id]


def random_text(rng: np.random.Generator, n: int, vocab: int = 400) -> list[int]:
    return rng.integers(0, vocab, size=n).tolist()


def random_pixels(rng: np.random.Generator, config: Qwen25VLConfig, grids) -> np.ndarray:
    rows = int(sum(t * h * w for t, h, w in grids))
    return rng.standard_normal((rows, config.vision.patch_dim)).astype(np.float32)


def hf_logits(model, **inputs) -> np.ndarray:
    torch_inputs = {k: torch.as_tensor(v) for k, v in inputs.items() if v is not None}
    with torch.no_grad():
        return model(**torch_inputs).logits.float().numpy()
