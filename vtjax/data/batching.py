"""Padding examples into batches of static, bucketed shape (pure numpy).

A jitted step compiles once per distinct input shape, so the text length and
the number of vision patch rows of a batch are rounded up to a small set of
bucket sizes. Padding text positions have attention_mask 0 and no loss;
padding patch rows are zeros after the real rows (the real count is
sum(prod(video_grid_thw))).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vtjax.data import vision

IGNORE_INDEX = -100  # labels value ignored by the loss (HF convention)


def bucket_length(n: int, buckets: Sequence[int] | None = None, minimum: int = 64) -> int:
    """Smallest bucket >= n.

    With `buckets`, the smallest listed size >= n (ValueError past the last).
    Otherwise the smallest size of the form 2^k or 3 * 2^(k-1) that is >=
    max(n, minimum): at most a third of a batch is padding.
    """
    if buckets:
        for b in sorted(buckets):
            if b >= n:
                return int(b)
        raise ValueError(f"size {n} exceeds the largest bucket {max(buckets)}; add a larger bucket.")
    n = max(int(n), int(minimum), 1)
    p = 1 << (n - 1).bit_length()  # next power of two >= n
    three_quarters = 3 * p // 4
    return three_quarters if three_quarters >= n and p >= 4 else p


def _pad_1d(x: np.ndarray, length: int, value, side: str) -> np.ndarray:
    pad = length - x.shape[0]
    widths = (0, pad) if side == "right" else (pad, 0)
    return np.pad(x, widths, constant_values=value)


def collate(
    examples: Sequence[dict],
    *,
    pad_id: int,
    length_buckets: Sequence[int] | None = None,
    patch_buckets: Sequence[int] | None = None,
    padding_side: str = "right",
    with_labels: bool = False,
    min_length: int = 64,
    min_patches: int = 256,
) -> dict:
    """Stacks worker-built examples into one HF-layout batch.

    Each example has `input_ids` int32 [L], `patches` uint8 [N, 1176],
    `grid_thw` [3], `second_per_grid_t`, optionally `loss_mask` bool [L], and
    string metadata (`record_id`, `solution`, `problem_type`, `answer`).

    Returns a dict: input_ids int32 [B, Lb], attention_mask int32 [B, Lb],
    pixel_values_videos float32 [Pb, 1176], video_grid_thw int64 [B, 3],
    second_per_grid_ts float32 [B], and with_labels: labels int32 [B, Lb]
    (IGNORE_INDEX off-target) and loss_mask bool [B, Lb]; plus the metadata as
    lists of str.
    """
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}.")
    lengths = [int(e["input_ids"].shape[0]) for e in examples]
    rows = [int(e["patches"].shape[0]) for e in examples]
    lb = bucket_length(max(lengths), length_buckets, min_length)
    pb = bucket_length(sum(rows), patch_buckets, min_patches)
    batch = {
        "input_ids": np.stack([_pad_1d(e["input_ids"], lb, pad_id, padding_side) for e in examples]),
        "attention_mask": np.stack(
            [_pad_1d(np.ones(n, np.int32), lb, 0, padding_side) for n in lengths]
        ),
    }
    if with_labels:
        masks = np.stack([_pad_1d(e["loss_mask"], lb, False, padding_side) for e in examples])
        batch["loss_mask"] = masks
        batch["labels"] = np.where(masks, batch["input_ids"], IGNORE_INDEX).astype(np.int32)
    pixels = np.zeros((pb, vision.ROW_SIZE), np.float32)  # [Pb, 1176]
    offset = 0
    for e, n in zip(examples, rows, strict=True):
        pixels[offset : offset + n] = vision.normalize_rows(e["patches"])
        offset += n
    batch["pixel_values_videos"] = pixels
    batch["video_grid_thw"] = np.stack([np.asarray(e["grid_thw"], np.int64) for e in examples])
    batch["second_per_grid_ts"] = np.asarray([e["second_per_grid_t"] for e in examples], np.float32)
    for key in ("record_id", "solution", "problem_type", "answer"):
        if key in examples[0]:
            batch[key] = [e[key] for e in examples]
    return batch


HF_KEYS = ("input_ids", "attention_mask", "pixel_values_videos", "video_grid_thw", "second_per_grid_ts")


def model_inputs(batch: dict) -> tuple[dict, dict]:
    """Splits a batch into HF-processor kwargs (real vision rows only) and its padded sizes.

    Returns:
      (hf, pads): `hf` has input_ids, attention_mask, pixel_values_videos
      [sum(prod(video_grid_thw)), 1176], video_grid_thw, second_per_grid_ts,
      as the HF processor returns them; `pads` = {"pad_length": Lb,
      "pad_patches": Pb}, the bucket sizes to pad back to (the model's
      `prepare_inputs` takes both).
    """
    rows = int(np.prod(batch["video_grid_thw"], axis=1).sum())
    hf = {k: batch[k] for k in HF_KEYS}
    hf["pixel_values_videos"] = batch["pixel_values_videos"][:rows]
    pads = {"pad_length": batch["input_ids"].shape[1], "pad_patches": batch["pixel_values_videos"].shape[0]}
    return hf, pads
