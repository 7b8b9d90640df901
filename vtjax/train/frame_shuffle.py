"""Temporally shuffled copies of a batch's videos, for T-GRPO's contrast rollout.

Video-R1 (@59d65c3, `grpo_trainer.py`) draws `torch.randperm` over the
sampled frames of each video and runs the processor again, so frame pairs are
re-formed from the shuffled frames. We do the same on the patch rows the
processor already made: a row holds (C, tp, p, p) values of tp = 2
consecutive frames at one spatial patch, and a video's rows run over
(grid_t, spatial) in order. So the rows of one video are viewed as
[grid_t, S, C, tp, p*p], unfolded to frames [grid_t * tp, S, C, p*p],
permuted along frames and folded back. Grids, token counts and positions are
unchanged; only which frame sits where moves. (A video padded to an even
frame count by repeating its last frame shuffles the copy too.)
"""

from __future__ import annotations

import numpy as np


def frame_rows(rows: np.ndarray, grid_t: int, channels: int, temporal_patch: int) -> np.ndarray:
    """Patch rows [grid_t * S, C * tp * pp] of one video -> frames [grid_t * tp, S, C, pp]."""
    n, dim = rows.shape
    if grid_t < 1 or n % grid_t or dim % (channels * temporal_patch):
        raise ValueError(f"{n} rows of width {dim} do not split into grid_t={grid_t} x "
                         f"(channels={channels}, temporal_patch={temporal_patch}) patches.")
    s, pp = n // grid_t, dim // (channels * temporal_patch)
    x = rows.reshape(grid_t, s, channels, temporal_patch, pp)  # [gt, S, C, tp, pp]
    return x.transpose(0, 3, 1, 2, 4).reshape(grid_t * temporal_patch, s, channels, pp)  # [F, S, C, pp]


def rows_of_frames(frames: np.ndarray, temporal_patch: int) -> np.ndarray:
    """Inverse of `frame_rows`: frames [F, S, C, pp] -> patch rows [F / tp * S, C * tp * pp]."""
    f, s, c, pp = frames.shape
    x = frames.reshape(f // temporal_patch, temporal_patch, s, c, pp).transpose(0, 2, 3, 1, 4)  # [gt, S, C, tp, pp]
    return x.reshape(f // temporal_patch * s, c * temporal_patch * pp)


def permute_video_frames(rows: np.ndarray, grid_t: int, order: np.ndarray, *, channels: int = 3,
                         temporal_patch: int = 2) -> np.ndarray:
    """One video's patch rows with its frames reordered: new frame k is old frame `order[k]`."""
    frames = frame_rows(rows, grid_t, channels, temporal_patch)
    if sorted(np.asarray(order).tolist()) != list(range(frames.shape[0])):
        raise ValueError(f"order {list(order)} is not a permutation of {frames.shape[0]} frames.")
    return rows_of_frames(frames[np.asarray(order)], temporal_patch)


def shuffle_videos(hf: dict, rng: np.random.Generator, *, channels: int = 3,
                   temporal_patch: int = 2) -> tuple[dict, list[np.ndarray]]:
    """A copy of the HF prompt dict whose every video has its frames in a random order.

    Args:
      hf: input_ids, attention_mask, pixel_values_videos [rows, C * tp * pp], video_grid_thw [V, 3], ...
        (images, under pixel_values / image_grid_thw, are left as they are).
      rng: draws one permutation per video, in batch order.

    Returns:
      (shuffled dict, the frame order of each video).
    """
    if "video_grid_thw" not in hf:
        return dict(hf), []
    pixels = np.asarray(hf["pixel_values_videos"])
    grids = np.asarray(hf["video_grid_thw"]).reshape(-1, 3)
    start = np.concatenate([[0], np.cumsum(np.prod(grids, axis=1))])
    parts, orders = [], []
    for v, (t, _, _) in enumerate(grids):
        order = rng.permutation(int(t) * temporal_patch)
        parts.append(permute_video_frames(pixels[start[v]:start[v + 1]], int(t), order, channels=channels,
                                          temporal_patch=temporal_patch))
        orders.append(order)
    out = dict(hf)
    out["pixel_values_videos"] = np.concatenate(parts + [pixels[start[-1]:]]).astype(pixels.dtype)
    return out, orders


def shuffle_rows(rows: np.ndarray, grid_thw: np.ndarray, is_image: np.ndarray, rngs, *, channels: int = 3,
                 temporal_patch: int = 2) -> np.ndarray:
    """A batch's patch rows (collated order: item after item) with every video's frames permuted.

    ``rngs``: one generator per item (image items draw nothing), so an item's order depends only on
    its own generator, e.g. one seeded by (seed, step, global prompt index).
    """
    grids = np.asarray(grid_thw, np.int64).reshape(-1, 3)
    start = np.concatenate([[0], np.cumsum(np.prod(grids, axis=1))])
    parts = []
    for item, (t, _, _) in enumerate(grids):
        own = rows[start[item]:start[item + 1]]
        if not bool(is_image[item]):
            order = rngs[item].permutation(int(t) * temporal_patch)
            own = permute_video_frames(own, int(t), order, channels=channels, temporal_patch=temporal_patch)
        parts.append(own)
    return np.concatenate(parts).astype(rows.dtype)
