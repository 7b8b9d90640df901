"""Grid-dependent index arrays of the vision tower, built on the host in numpy.

Everything whose size or content depends on the image/video grids is computed
here and padded to a bucketed static shape, so the jitted tower compiles once
per bucket rather than once per video.

Patch order (the HF processor's): per item, per temporal patch, 2x2 blocks of
patches (one merged LLM token each) in row-major block order. The tower
permutes merged tokens into *window order*: per temporal patch, the merged
(H/2, W/2) grid is cut into ``window_merged`` x ``window_merged`` windows in
row-major window order (edge windows are smaller; empty ones vanish).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from vtjax.models.qwen2_5_vl.config import VisionConfig


@dataclasses.dataclass(frozen=True)
class VisionIndex:
    """Index arrays for a batch of concatenated images/videos, unpadded.

    N = total patches, M = N / merge_unit merged tokens.
    """

    window_index: np.ndarray  # [M] merged token (original order) at each window-order slot
    reverse_index: np.ndarray  # [M] window-order slot of each merged token (argsort of the above)
    window_segment_ids: np.ndarray  # [N] window id (>= 1) of each patch, window order
    frame_segment_ids: np.ndarray  # [N] temporal-patch id (>= 1) of each patch, window order
    rotary_coords: np.ndarray  # [N, 2] (row, col) patch coordinates, window order
    max_frame_patches: int  # longest full-attention segment (h * w of the largest frame)


def build_vision_index(config: VisionConfig, grid_thw) -> VisionIndex:
    """Builds the index arrays for items with patch grids ``grid_thw`` [n, 3] (t, h, w)."""
    grid_thw = np.asarray(grid_thw, dtype=np.int64).reshape(-1, 3)
    merge = config.spatial_merge_size
    if np.any(grid_thw <= 0) or np.any(grid_thw[:, 1:] % merge):
        raise ValueError(f"grid_thw rows must be positive with h, w divisible by "
                         f"spatial_merge_size={merge}; got {grid_thw.tolist()}")
    window_index, window_ids, frame_ids, coords = [], [], [], []
    merged_offset, window_offset, frame_offset = 0, 0, 0
    for t, h, w in grid_thw:
        item_window_index, item_window_of_token, num_windows = _windows(config, t, h, w)
        window_index.append(item_window_index + merged_offset)
        # Ids are per merged token in original order; window order reads them through the index.
        window_ids.append(item_window_of_token + window_offset + 1)
        frame_ids.append(np.repeat(np.arange(t) + frame_offset + 1, (h // merge) * (w // merge)))
        coords.append(np.tile(_patch_coords(h, w, merge), (t, 1)))
        merged_offset += t * (h // merge) * (w // merge)
        window_offset += num_windows
        frame_offset += t

    unit = config.merge_unit
    window_index = np.concatenate(window_index).astype(np.int32)
    window_ids = np.concatenate(window_ids)[window_index]
    frame_ids = np.concatenate(frame_ids)[window_index]
    coords = np.concatenate(coords).reshape(-1, unit, 2)[window_index].reshape(-1, 2)
    return VisionIndex(
        window_index=window_index,
        reverse_index=np.argsort(window_index).astype(np.int32),
        window_segment_ids=np.repeat(window_ids, unit).astype(np.int32),
        frame_segment_ids=np.repeat(frame_ids, unit).astype(np.int32),
        rotary_coords=coords.astype(np.int32),
        max_frame_patches=int((grid_thw[:, 1] * grid_thw[:, 2]).max()),
    )


def _patch_coords(h: int, w: int, merge: int) -> np.ndarray:
    """[h*w, 2] (row, col) of each patch of one frame in processor order (2x2 blocks)."""
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")  # [h, w]

    def blocked(x):  # (h, w) -> (h/m, m, w/m, m) -> (h/m, w/m, m, m)
        return x.reshape(h // merge, merge, w // merge, merge).transpose(0, 2, 1, 3).reshape(-1)

    return np.stack([blocked(rows), blocked(cols)], axis=-1)


def _windows(config: VisionConfig, t: int, h: int, w: int):
    """Window permutation of one item's merged tokens.

    Returns (window_index [t*gh*gw], window id of each merged token in original
    order [t*gh*gw], number of non-empty windows).
    """
    side = config.window_merged
    gh, gw = h // config.spatial_merge_size, w // config.spatial_merge_size
    nwh, nww = -(-gh // side), -(-gw // side)
    token = np.arange(t * gh * gw).reshape(t, gh, gw)
    rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    window_of = (np.arange(t)[:, None, None] * nwh * nww
                 + (rows // side)[None] * nww + (cols // side)[None])  # [t, gh, gw]
    # Window order: (t, window row, window col, row in window, col in window).
    order_key = (window_of * side * side + (rows % side)[None] * side + (cols % side)[None])
    window_index = token.reshape(-1)[np.argsort(order_key.reshape(-1), kind="stable")]
    # Renumber windows densely so empty windows leave no gaps.
    _, dense = np.unique(window_of.reshape(-1), return_inverse=True)
    return window_index, dense.reshape(-1), int(dense.max()) + 1
