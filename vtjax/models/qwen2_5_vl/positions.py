"""Multimodal rotary position ids (3 planes: time, height, width), computed on the host.

Follows transformers 4.51.3 ``Qwen2_5_VLForConditionalGeneration.get_rope_index``,
the behaviour the published checkpoints were trained with:

* a text run gets ``arange(len) + start`` on all three planes, ``start`` being
  one past the largest position so far (0 at the beginning);
* a vision run with grid (T, H, W) gets, for merged token (k, i, j),
  ``t = trunc(float32(k * second_per_grid_t) * tokens_per_second)`` (images:
  ``second_per_grid_t = 0``), ``h = i``, ``w = j``, each plus ``start``;
* padded positions hold 1;
* a packed row (``segment_ids``: several examples, ids 1, 2, ... in order of
  appearance) restarts the rule at each example, as if each were its own row;
* the per-row delta ``max + 1 - padded_length`` gives decode positions: the
  token at absolute index ``p >= padded_length`` sits at ``p + delta``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vtjax.models.qwen2_5_vl.config import Qwen25VLConfig


def get_rope_index(
    config: Qwen25VLConfig,
    input_ids,
    attention_mask=None,
    image_grid_thw=None,
    video_grid_thw=None,
    second_per_grid_ts=None,
    segment_ids=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Position ids for a batch as the HF processor lays it out.

    Args:
      config: model config (token ids, merge size, tokens_per_second).
      input_ids: [B, L] int with expanded ``<|image_pad|>`` / ``<|video_pad|>`` runs.
      attention_mask: [B, L], 1 for real tokens (left or right padding allowed).
      image_grid_thw: [num_images, 3] patch grids, in order of appearance.
      video_grid_thw: [num_videos, 3] patch grids, in order of appearance.
      second_per_grid_ts: [num_videos] seconds per temporal patch (1.0 when None).
      segment_ids: [B, L] packed rows (0 = padding; replaces ``attention_mask``): positions restart at each
        segment, taken in order of appearance (the grids follow that order too).

    Returns:
      position_ids [3, B, L] int64 and deltas [B] int64 (of each row's last segment).
    """
    input_ids = np.asarray(input_ids)
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must be [B, L]; got shape {input_ids.shape}")
    batch, length = input_ids.shape
    if attention_mask is None:
        attention_mask = np.ones_like(input_ids)
    attention_mask = np.asarray(attention_mask)
    if attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask {attention_mask.shape} must match input_ids {input_ids.shape}")
    if segment_ids is not None:
        return _packed_positions(config, input_ids, np.asarray(segment_ids), image_grid_thw, video_grid_thw,
                                 second_per_grid_ts)

    has_vision = image_grid_thw is not None or video_grid_thw is not None
    if not has_vision:
        return _text_only_positions(attention_mask)

    images = _as_grid(image_grid_thw, "image_grid_thw")
    videos = _as_grid(video_grid_thw, "video_grid_thw")
    if second_per_grid_ts is None:
        seconds = np.ones(len(videos), np.float32)
    else:
        seconds = np.asarray(second_per_grid_ts, dtype=np.float32).reshape(-1)
    if len(seconds) < len(videos):
        raise ValueError(f"second_per_grid_ts has {len(seconds)} entries for {len(videos)} videos")

    position_ids = np.ones((3, batch, length), np.int64)
    deltas = np.zeros(batch, np.int64)
    cursor = {"image": 0, "video": 0}
    for row in range(batch):
        keep = attention_mask[row] == 1
        tokens = input_ids[row][keep]
        positions = _row_positions(config, tokens, images, videos, seconds, cursor)
        position_ids[:, row, keep] = positions
        deltas[row] = positions.max() + 1 - length if positions.size else 1 - length
    return position_ids, deltas


def decode_position_ids(deltas, padded_length: int, steps: int, start=0):
    """Positions of ``steps`` generated tokens after a prompt padded to ``padded_length``.

    Returns [3, B, steps]: token n (0-based, counted from ``start``: a scalar, or [B] per row) of row b sits
    at ``padded_length + start[b] + n + deltas[b]``. numpy in, numpy out; a jax array (e.g. traced) in, jax out.
    """
    xp = jnp if isinstance(deltas, jax.Array) or isinstance(start, jax.Array) else np
    deltas = xp.asarray(deltas).reshape(-1)
    start = xp.asarray(start).reshape(-1, 1)  # [1, 1] or [B, 1]
    pos = padded_length + start + xp.arange(steps)[None, :] + deltas[:, None]  # [B, steps]
    out = xp.broadcast_to(pos[None], (3,) + pos.shape)
    return out.copy() if xp is np else out


def _packed_positions(config, input_ids, segment_ids, image_grid_thw, video_grid_thw, second_per_grid_ts):
    """``get_rope_index`` of packed rows: each segment as a row of its own, the grids consumed in order."""
    if segment_ids.shape != input_ids.shape:
        raise ValueError(f"segment_ids {segment_ids.shape} must match input_ids {input_ids.shape}")
    batch, length = input_ids.shape
    position_ids = np.ones((3, batch, length), np.int64)
    deltas = np.zeros(batch, np.int64)
    examples = [(row, seg) for row in range(batch) for seg in _in_order(segment_ids[row])]
    masks = np.stack([segment_ids[row] == seg for row, seg in examples]) if examples else np.zeros((0, length))
    rows = np.stack([input_ids[row] for row, _ in examples]) if examples else np.zeros((0, length), np.int64)
    per_example, example_deltas = get_rope_index(config, rows, masks.astype(np.int64), image_grid_thw,
                                                 video_grid_thw, second_per_grid_ts)  # [3, E, L]
    for e, (row, _) in enumerate(examples):
        keep = masks[e]
        position_ids[:, row, keep] = per_example[:, e, keep]
        deltas[row] = example_deltas[e]
    return position_ids, deltas


def _in_order(segments: np.ndarray) -> list[int]:
    """The non-zero ids of one row in order of first appearance."""
    ids, first = np.unique(segments[segments != 0], return_index=True)
    return [int(x) for x in ids[np.argsort(first)]]


def _text_only_positions(attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mask = attention_mask.astype(np.int64)
    pos = np.cumsum(mask, axis=-1) - 1
    pos = np.where(mask == 0, 1, pos)
    position_ids = np.broadcast_to(pos[None], (3,) + pos.shape).copy()
    deltas = pos.max(axis=-1) + 1 - mask.shape[-1]
    return position_ids, deltas


def _as_grid(grid, name: str) -> np.ndarray:
    if grid is None:
        return np.zeros((0, 3), np.int64)
    grid = np.asarray(grid, dtype=np.int64)
    if grid.ndim != 2 or grid.shape[1] != 3:
        raise ValueError(f"{name} must be [N, 3] (t, h, w); got shape {grid.shape}")
    return grid


def _row_positions(config, tokens, images, videos, seconds, cursor) -> np.ndarray:
    """[3, n] positions for one row's unpadded tokens; advances the shared image/video cursor."""
    merge = config.vision.spatial_merge_size
    tokens_per_second = np.float32(config.vision.tokens_per_second)
    starts = np.flatnonzero(tokens == config.vision_start_token_id)
    starts = starts[starts + 1 < len(tokens)]
    following = tokens[starts + 1]
    remaining = {"image": int(np.sum(following == config.image_token_id)),
                 "video": int(np.sum(following == config.video_token_id))}
    token_of = {"image": config.image_token_id, "video": config.video_token_id}

    pieces: list[np.ndarray] = []
    st = 0
    for _ in range(remaining["image"] + remaining["video"]):
        ends = {}
        for kind in ("image", "video"):
            hits = np.flatnonzero(tokens[st:] == token_of[kind]) if remaining[kind] > 0 else []
            ends[kind] = st + int(hits[0]) if len(hits) else len(tokens) + 1
        kind = "image" if ends["image"] < ends["video"] else "video"
        grids = images if kind == "image" else videos
        index = cursor[kind]
        if index >= len(grids):
            raise ValueError(f"row has more {kind}s than {kind}_grid_thw provides ({len(grids)})")
        t, h, w = (int(x) for x in grids[index])
        second_per_grid = np.float32(0.0) if kind == "image" else seconds[index]
        cursor[kind] += 1
        remaining[kind] -= 1
        end = ends[kind]

        start = pieces[-1].max() + 1 if pieces else 0
        text_len = end - st
        pieces.append(np.broadcast_to(np.arange(text_len) + start, (3, text_len)))
        grid_h, grid_w = h // merge, w // merge
        # float32 product then truncation, exactly as torch computes it.
        t_pos = (np.arange(t, dtype=np.float32) * second_per_grid * tokens_per_second).astype(np.int64)
        t_index = np.repeat(t_pos, grid_h * grid_w)
        h_index = np.tile(np.repeat(np.arange(grid_h), grid_w), t)
        w_index = np.tile(np.arange(grid_w), t * grid_h)
        pieces.append(np.stack([t_index, h_index, w_index]) + text_len + start)
        st = end + t * grid_h * grid_w

    if st < len(tokens):
        start = pieces[-1].max() + 1 if pieces else 0
        pieces.append(np.broadcast_to(np.arange(len(tokens) - st) + start, (3, len(tokens) - st)))
    if not pieces:
        return np.zeros((3, 0), np.int64)
    return np.concatenate(pieces, axis=1)
