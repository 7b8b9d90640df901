"""Padding examples into batches of static, bucketed shape (pure numpy).

A jitted step compiles once per distinct input shape, so the text length and
the number of vision patch rows of a batch are rounded up to a small set of
bucket sizes (``vtjax.buckets``). Padding text positions have attention_mask 0 and no loss;
padding patch rows are zeros after the real rows (the real count is
sum(prod(grid_thw))).

A batch holds one video or image per row, their patch rows concatenated in
row order (`vision_rows`, `grid_thw`, `is_image`). `hf_vision` splits them
into the HF processor's keyword arguments (images and videos apart, each in
row order), which is what the model's `prepare_inputs` and the PyTorch
reference take.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vtjax.buckets import bucket_size
from vtjax.data import vision

IGNORE_INDEX = -100  # labels value ignored by the loss (HF convention)


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
    `grid_thw` [3], `second_per_grid_t`, optionally `is_image` (default
    False) and `loss_mask` bool [L], and string metadata (`record_id`,
    `solution`, `problem_type`, `answer`).

    Returns a dict: input_ids int32 [B, Lb], attention_mask int32 [B, Lb],
    vision_rows float32 [Pb, 1176] (every row's patches, in row order, then
    zeros), grid_thw int64 [B, 3], second_per_grid_ts float32 [B] (0 for
    images), is_image bool [B], and with_labels: labels int32 [B, Lb]
    (IGNORE_INDEX off-target) and loss_mask bool [B, Lb]; plus the metadata as
    lists of str, and example_row int32 [B] (arange: each example has its own row).
    """
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}.")
    lengths = [int(e["input_ids"].shape[0]) for e in examples]
    rows = [int(e["patches"].shape[0]) for e in examples]
    lb = bucket_size(max(lengths), min_length, length_buckets)
    pb = bucket_size(sum(rows), min_patches, patch_buckets)
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
    batch.update(_vision_and_metadata(examples, pb))
    batch["example_row"] = np.arange(len(examples), dtype=np.int32)  # [B]: one example per row
    return batch


def collate_packed(
    rows: Sequence[Sequence[dict]],
    *,
    pad_id: int,
    token_budget: int,
    patch_buckets: Sequence[int] | None = None,
    with_labels: bool = False,
    min_patches: int = 256,
) -> dict:
    """Packs several examples into each row of ``token_budget`` tokens (see ``collate`` for an example's keys).

    Examples follow each other in a row from the left; the rest of the row is padding. Vision items are
    listed in row order, then in their order within the row, which is the order of their tokens.

    Returns what ``collate`` returns, with every per-example entry ([E, ...] and the metadata lists) over
    the E examples in that order, plus segment_ids int32 [R, token_budget] (1, 2, ... per example of a
    row, 0 on padding) and example_row int32 [E] (the row holding each example).
    """
    flat = [e for row in rows for e in row]
    if not flat:
        raise ValueError("no examples to pack")
    ids = np.full((len(rows), token_budget), pad_id, np.int32)
    segments = np.zeros((len(rows), token_budget), np.int32)
    masks = np.zeros((len(rows), token_budget), bool)
    for r, row in enumerate(rows):
        offset = 0
        for s, e in enumerate(row, start=1):
            n = int(e["input_ids"].shape[0])
            if offset + n > token_budget:
                raise ValueError(f"row {r} holds {offset + n} tokens, more than token_budget={token_budget}")
            ids[r, offset : offset + n] = e["input_ids"]
            segments[r, offset : offset + n] = s
            if with_labels:
                masks[r, offset : offset + n] = e["loss_mask"]
            offset += n
    batch = {"input_ids": ids, "attention_mask": (segments > 0).astype(np.int32), "segment_ids": segments}
    if with_labels:
        batch["loss_mask"] = masks
        batch["labels"] = np.where(masks, ids, IGNORE_INDEX).astype(np.int32)
    total_rows = sum(int(e["patches"].shape[0]) for e in flat)
    batch.update(_vision_and_metadata(flat, bucket_size(total_rows, min_patches, patch_buckets)))
    batch["example_row"] = np.repeat(np.arange(len(rows), dtype=np.int32), [len(row) for row in rows])
    return batch


def _vision_and_metadata(examples: Sequence[dict], padded_rows: int) -> dict:
    """vision_rows [padded_rows, 1176] (every example's patches in order, then zeros), the per-example
    grid_thw / second_per_grid_ts / is_image, and the metadata lists."""
    pixels = np.zeros((padded_rows, vision.ROW_SIZE), np.float32)  # [Pb, 1176]
    offset = 0
    for e in examples:
        n = int(e["patches"].shape[0])
        pixels[offset : offset + n] = vision.normalize_rows(e["patches"])
        offset += n
    out = {
        "vision_rows": pixels,
        "grid_thw": np.stack([np.asarray(e["grid_thw"], np.int64) for e in examples]),
        "second_per_grid_ts": np.asarray([e["second_per_grid_t"] for e in examples], np.float32),
        "is_image": np.asarray([bool(e.get("is_image", False)) for e in examples], bool),
    }
    for key in ("record_id", "solution", "problem_type", "answer"):
        if key in examples[0]:
            out[key] = [e[key] for e in examples]
    return out


def hf_vision(grid_thw, second_per_grid_ts, is_image, rows=None) -> dict:
    """HF processor vision kwargs for one item per row: images and videos apart, each in row order.

    Args:
      grid_thw: [B, 3]; second_per_grid_ts: [B] (ignored on image rows); is_image: bool [B].
      rows: the real patch rows of these B items concatenated in row order [sum(prod(grid_thw)), 1176];
        None leaves the pixel keys out (for `get_rope_index`).

    Returns: image_grid_thw (+ pixel_values) when there are images, video_grid_thw and
    second_per_grid_ts (+ pixel_values_videos) when there are videos.
    """
    grids = np.asarray(grid_thw, np.int64).reshape(-1, 3)
    images = np.asarray(is_image, bool).reshape(-1)
    seconds = np.asarray(second_per_grid_ts, np.float32).reshape(-1)
    out = {}
    if rows is not None:
        rows = np.asarray(rows)
        counts = np.prod(grids, axis=1)
        if rows.shape[0] != counts.sum():
            raise ValueError(f"{rows.shape[0]} patch rows for grids that need {int(counts.sum())}")
        item = np.repeat(np.arange(grids.shape[0]), counts)  # the row of each patch row
    if images.any():
        out["image_grid_thw"] = grids[images]
        if rows is not None:
            out["pixel_values"] = rows[images[item]]
    if (~images).any():
        out["video_grid_thw"] = grids[~images]
        out["second_per_grid_ts"] = seconds[~images]
        if rows is not None:
            out["pixel_values_videos"] = rows[~images[item]]
    return out


def real_rows(batch: dict) -> np.ndarray:
    """The batch's patch rows without the bucket padding: [sum(prod(grid_thw)), 1176]."""
    return batch["vision_rows"][: int(np.prod(batch["grid_thw"], axis=1).sum())]


def model_inputs(batch: dict) -> tuple[dict, dict]:
    """Splits a batch into HF-processor kwargs (real vision rows only) and its padded sizes.

    Returns:
      (hf, pads): `hf` has input_ids, attention_mask and the `hf_vision` keys
      (pixel_values / image_grid_thw for image rows, pixel_values_videos /
      video_grid_thw / second_per_grid_ts for video rows), as the HF processor
      returns them; `pads` = {"pad_length": Lb, "pad_patches": Pb}, the bucket
      sizes to pad back to (the model's `prepare_inputs` takes both).
    """
    hf = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    hf.update(hf_vision(batch["grid_thw"], batch["second_per_grid_ts"], batch["is_image"], real_rows(batch)))
    pads = {"pad_length": batch["input_ids"].shape[1], "pad_patches": batch["vision_rows"].shape[0]}
    return hf, pads

