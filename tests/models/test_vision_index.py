"""Host-side vision index arrays against transformers' own window / rotary index code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.parity.hf_reference import build_hf_model
from vtjax.models.qwen2_5_vl import Qwen25VLConfig
from vtjax.models.qwen2_5_vl.vision_index import build_vision_index

CONFIG = Qwen25VLConfig.tiny()
GRIDS = [
    [(1, 6, 10)],  # merged 3x5: not a multiple of the 4x4 window
    [(2, 16, 16)],  # merged 8x8: exact, the reference adds an empty padded window
    [(1, 4, 6), (3, 10, 14), (2, 8, 20)],  # several items of different grids
]


@pytest.fixture(scope="module")
def visual():
    return build_hf_model(CONFIG).visual


@pytest.mark.parametrize("grids", GRIDS)
def test_window_index_and_segments_match_reference(visual, grids):
    grid = torch.tensor(grids)
    ref_index, ref_cu = visual.get_window_index(grid)
    ref_cu = torch.unique_consecutive(torch.tensor(ref_cu)).numpy()
    ours = build_vision_index(CONFIG.vision, grids)
    np.testing.assert_array_equal(ours.window_index, ref_index.numpy())
    np.testing.assert_array_equal(ours.reverse_index, torch.argsort(ref_index).numpy())
    # Window segments: boundaries where the id changes equal the reference cu_seqlens.
    change = np.flatnonzero(np.diff(ours.window_segment_ids)) + 1
    np.testing.assert_array_equal(np.concatenate([[0], change, [len(ours.window_segment_ids)]]), ref_cu)
    frame_cu = np.concatenate([[0], np.cumsum(np.repeat([h * w for _, h, w in grids], [t for t, _, _ in grids]))])
    change = np.flatnonzero(np.diff(ours.frame_segment_ids)) + 1
    np.testing.assert_array_equal(np.concatenate([[0], change, [len(ours.frame_segment_ids)]]), frame_cu)


@pytest.mark.parametrize("grids", GRIDS)
def test_rotary_coords_match_reference(visual, grids):
    ref = visual.rot_pos_emb(torch.tensor(grids)).numpy()  # [N, head_dim/2] angles, processor order
    ours = build_vision_index(CONFIG.vision, grids)
    unit = CONFIG.vision.merge_unit
    coords = ours.rotary_coords.reshape(-1, unit, 2)[ours.reverse_index].reshape(-1, 2)  # back to processor order
    inv = visual.rotary_pos_emb.inv_freq.numpy()
    angles = np.concatenate([coords[:, :1] * inv, coords[:, 1:] * inv], axis=-1).astype(np.float32)
    np.testing.assert_allclose(angles, ref, rtol=0, atol=1e-6)


