"""Model FLOPs of one SFT step, counted from the batch's real tokens and video grids (for MFU).

Matmuls count 2 FLOPs per multiply-add; training costs 3x the forward pass
(backward = 2x), except for frozen parts at the front of the model (the
vision tower), which need no backward at all. Rematerialisation is not
counted: MFU is model FLOPs over peak, as in the PaLM paper's appendix B.
"""

from __future__ import annotations

import numpy as np

from vtjax.models.qwen2_5_vl import Qwen25VLConfig
from vtjax.train.loss import example_keys

# bf16 dense peak TFLOP/s per device, matched against jax's device_kind (first hit wins).
PEAK_TFLOPS = (
    ("v6 lite", 918.0), ("v6e", 918.0), ("v5p", 459.0), ("v5 lite", 197.0), ("v5e", 197.0), ("v4", 275.0),
    ("H200", 989.0), ("H100", 989.0), ("A100", 312.0), ("L4", 121.0),
)


def peak_tflops(device_kind: str) -> float | None:
    """Per-device bf16 peak for a known accelerator, None otherwise (e.g. CPU)."""
    for key, value in PEAK_TFLOPS:
        if key.lower() in device_kind.lower():
            return value
    return None


def text_forward_flops(config: Qwen25VLConfig, lengths: np.ndarray) -> float:
    """Decoder + LM head forward FLOPs for sequences of the given real ``lengths`` [B]."""
    t = config.text
    d = t.head_dim
    per_token = (2 * t.hidden_size * d * (2 * t.num_attention_heads + 2 * t.num_key_value_heads)  # q,k,v,o
                 + 2 * 3 * t.hidden_size * t.intermediate_size)  # gate, up, down
    tokens = float(np.sum(lengths))
    causal_pairs = float(np.sum(lengths.astype(np.float64) ** 2)) / 2  # query-key pairs under the mask
    attention = 2 * 2 * t.num_attention_heads * d * causal_pairs  # QK^T and PV
    return t.num_hidden_layers * (per_token * tokens + attention) + 2 * t.hidden_size * t.vocab_size * tokens


def vision_forward_flops(config: Qwen25VLConfig, grids: np.ndarray) -> float:
    """Vision tower + merger forward FLOPs for videos of patch grids ``grids`` [n, 3]."""
    v = config.vision
    grids = np.asarray(grids, np.float64).reshape(-1, 3)
    patches = float(np.prod(grids, axis=1).sum())
    e = v.hidden_size
    per_patch = 2 * e * 4 * e + 2 * 3 * e * v.intermediate_size  # qkv + proj, gate/up/down
    full = len(v.fullatt_block_indexes)
    window_pairs = patches * v.window_patches  # each patch sees at most one window
    frame_pairs = float(np.sum(grids[:, 0] * (grids[:, 1] * grids[:, 2]) ** 2))  # per temporal patch
    attention = 2 * 2 * e * ((v.depth - full) * window_pairs + full * frame_pairs)
    merged = patches / v.merge_unit
    merger = 2 * merged * (v.merge_unit * e) * (v.merge_unit * e + v.out_hidden_size)
    return 2 * v.patch_dim * e * patches + v.depth * per_patch * patches + attention + merger


def train_step_flops(config: Qwen25VLConfig, batch: dict, *, vision_frozen: bool = False) -> float:
    """Model FLOPs of one training step on a data batch (``attention_mask``, ``grid_thw``; packed rows:
    ``segment_ids``, each example attending to itself only)."""
    lengths = np.asarray(batch["attention_mask"]).sum(axis=1)
    if "segment_ids" in batch:
        segments = np.asarray(batch["segment_ids"])
        lengths = np.bincount(example_keys(segments)[segments > 0])
    vision = vision_forward_flops(config, batch["grid_thw"])
    return 3 * text_forward_flops(config, lengths) + (1 if vision_frozen else 3) * vision
