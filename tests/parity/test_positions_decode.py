"""Decode positions from the rope deltas equal transformers' positions of the extended sequence."""

from __future__ import annotations

import numpy as np
import torch

from tests.parity.hf_reference import vision_run
from vtjax.models.qwen2_5_vl import Qwen25VLConfig, decode_position_ids, get_rope_index
from tests.parity.test_logits import model_and_params

CONFIG = Qwen25VLConfig.tiny()


def test_decode_positions_continue_the_prompt_like_transformers():
    model, _ = model_and_params("base")
    grid = (3, 8, 12)
    prompt = [11, 12] + vision_run(CONFIG, "video", grid) + [13, 14, 15]
    generated = [21, 22, 23, 24]
    ids = np.array([prompt])
    kwargs = dict(video_grid_thw=np.array([grid]), second_per_grid_ts=np.array([1.5], np.float32))
    _, deltas = get_rope_index(CONFIG, ids, **kwargs)
    ours = decode_position_ids(deltas, len(prompt), len(generated))  # [3, 1, 4]
    full = torch.as_tensor(np.array([prompt + generated]))
    theirs, _ = model.get_rope_index(full, None, torch.as_tensor(kwargs["video_grid_thw"]),
                                     torch.as_tensor(kwargs["second_per_grid_ts"]), None)
    np.testing.assert_array_equal(ours, theirs.numpy()[:, :, len(prompt):])
