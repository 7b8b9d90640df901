"""Turns HF-processor-shaped numpy arrays into padded, bucketed ``ModelInputs``.

Sequence length and patch count are rounded up to a bucket (``vtjax.buckets``),
as is the per-frame patch count that bounds full-attention segments. A jitted
forward therefore compiles once per bucket.
"""

from __future__ import annotations

import numpy as np

from vtjax.buckets import bucket_size
from vtjax.models.qwen2_5_vl.config import Qwen25VLConfig
from vtjax.models.qwen2_5_vl.model import ModelInputs
from vtjax.models.qwen2_5_vl.positions import get_rope_index
from vtjax.models.qwen2_5_vl.vision import VisionInputs
from vtjax.models.qwen2_5_vl.vision_index import build_vision_index

MIN_TEXT_BUCKET = 16  # shortest padded sequence
MIN_PATCH_BUCKET = 64  # smallest padded patch count (one full window)


def prepare_inputs(
    config: Qwen25VLConfig,
    *,
    input_ids,
    attention_mask=None,
    pixel_values=None,
    image_grid_thw=None,
    pixel_values_videos=None,
    video_grid_thw=None,
    second_per_grid_ts=None,
    pad_length: int | None = None,
    pad_patches: int | None = None,
    segment_ids=None,
) -> ModelInputs:
    """Builds bucketed model inputs from arrays laid out as the HF processor produces them.

    Args:
      input_ids: [B, L] with each image/video expanded to t*h*w/merge_unit pad tokens.
      attention_mask: [B, L], 1 = real token (left or right padding).
      pixel_values / pixel_values_videos: [N, C*T*P*P] rows of all images / videos.
      image_grid_thw / video_grid_thw: [n, 3] patch grids.
      second_per_grid_ts: [num_videos] seconds per temporal patch.
      pad_length / pad_patches: explicit padded sizes (default: the bucket).
      segment_ids: [B, L] packed rows instead of ``attention_mask``: several examples per row, ids 1, 2, ...
        (0 = padding); attention stays inside an example and positions restart at each (``get_rope_index``).
        The vision items follow the examples' order.
    """
    input_ids = np.asarray(input_ids)
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must be [B, L]; got shape {input_ids.shape}")
    batch, length = input_ids.shape
    if segment_ids is not None:
        if attention_mask is not None:
            raise ValueError("pass attention_mask or segment_ids (packed rows), not both")
        segment_ids = np.asarray(segment_ids).astype(np.int32)
        attention_mask = (segment_ids != 0).astype(np.int32)
    attention_mask = (np.ones_like(input_ids) if attention_mask is None
                      else np.asarray(attention_mask).astype(np.int32))
    pad_length = bucket_size(length, MIN_TEXT_BUCKET) if pad_length is None else pad_length
    if pad_length < length:
        raise ValueError(f"pad_length={pad_length} is shorter than the sequence ({length})")
    extra = pad_length - length
    pad_id = config.pad_token_id or 0
    ids = np.pad(input_ids, ((0, 0), (0, extra)), constant_values=pad_id).astype(np.int32)
    segments = np.pad(attention_mask if segment_ids is None else segment_ids, ((0, 0), (0, extra))).astype(np.int32)

    items = [(pixel_values, image_grid_thw, "image"), (pixel_values_videos, video_grid_thw, "video")]
    rows, grids, merged_counts = [], [], {}
    for pixels, grid, kind in items:
        merged_counts[kind] = 0
        if pixels is None and grid is None:
            continue
        if pixels is None or grid is None:
            raise ValueError(f"{kind}: pass both the pixel values and the {kind}_grid_thw")
        pixels, grid = np.asarray(pixels), np.asarray(grid, dtype=np.int64).reshape(-1, 3)
        expected = int(np.prod(grid, axis=1).sum())
        if pixels.ndim != 2 or pixels.shape != (expected, config.vision.patch_dim):
            raise ValueError(f"{kind} pixel values have shape {pixels.shape}; the grids "
                             f"{grid.tolist()} need ({expected}, {config.vision.patch_dim})")
        rows.append(pixels)
        grids.append(grid)
        merged_counts[kind] = expected // config.vision.merge_unit

    gather = _vision_gather(config, input_ids, attention_mask, merged_counts)
    position_ids, _ = get_rope_index(config, input_ids, attention_mask, image_grid_thw,
                                     video_grid_thw, second_per_grid_ts, segment_ids=segment_ids)
    gather = np.pad(gather, ((0, 0), (0, extra)), constant_values=-1)
    positions = np.pad(position_ids, ((0, 0), (0, 0), (0, extra)), constant_values=1).astype(np.int32)
    vision = None
    if rows:
        vision = _vision_inputs(config, np.concatenate(rows), np.concatenate(grids), pad_patches)
    return ModelInputs(input_ids=ids, segment_ids=segments, position_ids=positions,
                       vision_gather=gather, vision=vision)


def _vision_gather(config, input_ids, attention_mask, merged_counts) -> np.ndarray:
    """[B, L] row of the concatenated (images, then videos) features placed at each token, -1 for text.

    Features are consumed in row-major token order, as transformers' masked_scatter does.
    """
    gather = np.full(input_ids.shape, -1, np.int32)
    offset = 0
    for kind, token in (("image", config.image_token_id), ("video", config.video_token_id)):
        hits = (input_ids == token) & (attention_mask == 1)
        if int(hits.sum()) != merged_counts[kind]:
            raise ValueError(f"{kind} features and {kind} tokens do not match: {int(hits.sum())} "
                             f"<|{kind}_pad|> tokens in input_ids, {merged_counts[kind]} features "
                             f"from the {kind} grids")
        gather[hits] = offset + np.arange(merged_counts[kind])
        offset += merged_counts[kind]
    return gather


def _vision_inputs(config, pixels, grids, pad_patches) -> VisionInputs:
    index = build_vision_index(config.vision, grids)
    num = pixels.shape[0]
    unit = config.vision.merge_unit
    padded = bucket_size(num, MIN_PATCH_BUCKET) if pad_patches is None else pad_patches
    if padded < num or padded % unit:
        raise ValueError(f"pad_patches={padded} must be >= {num} patches and a multiple of {unit}")
    extra = padded - num
    tail = np.arange(num // unit, padded // unit, dtype=np.int32)  # padding maps onto itself
    return VisionInputs(
        patches=np.pad(pixels.astype(np.float32), ((0, extra), (0, 0))),
        window_index=np.concatenate([index.window_index, tail]),
        reverse_index=np.concatenate([index.reverse_index, tail]),
        window_segment_ids=np.pad(index.window_segment_ids, (0, extra)),
        frame_segment_ids=np.pad(index.frame_segment_ids, (0, extra)),
        rotary_coords=np.pad(index.rotary_coords, ((0, extra), (0, 0))),
        frame_len=bucket_size(index.max_frame_patches, config.vision.window_patches),
    )
