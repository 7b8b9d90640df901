"""Rollouts -> the micro-batched arrays of a GRPO update, built on the host.

Row n = b * G + j holds prompt b followed by its completion j. Each
micro-batch runs the vision tower once per prompt it touches: the G rows of a
prompt gather the same vision features (their gather indices point at one
copy), so the video is neither re-encoded nor re-differentiated G times.
"""

from __future__ import annotations

import flax.struct
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from vtjax.data.batching import hf_vision, real_rows
from vtjax.models.qwen2_5_vl import ModelInputs, Qwen25VLConfig, bucket_size, get_rope_index, prepare_inputs
from vtjax.models.qwen2_5_vl.inputs import MIN_PATCH_BUCKET, MIN_TEXT_BUCKET
from vtjax.sampling import left_pad
from vtjax.train.batch import BATCH_AXES
from vtjax.train.loss import shift_targets


@flax.struct.dataclass
class RolloutBatch:
    """One GRPO update's data; arrays carry a leading micro-batch axis M, b rows each."""

    inputs: ModelInputs  # prompt + completion sequences [M, b, L] (vision: the prompts' videos)
    targets: jax.Array  # [M, b, L] int32 next token at each position
    weights: jax.Array  # [M, b, L] float32, 1 where the next token is a completion token
    advantages: jax.Array  # [M, b] float32
    share: jax.Array  # [M] float32 this micro-batch's weight in the loss
    old_logp: jax.Array | None = None  # [M, b, L] policy log-probs at rollout time (num_iterations > 1)
    ref_logp: jax.Array | None = None  # [M, b, L] reference policy log-probs (beta > 0)


def build_rollout_batch(config: Qwen25VLConfig, prompts: dict, completions: np.ndarray, lengths: np.ndarray,
                        advantages: np.ndarray, *, group: int, micro_batches: int, batch_shards: int,
                        loss_agg: str) -> RolloutBatch:
    """Host arrays of a GRPO update.

    Args:
      prompts: the B prompts in the collated layout of `vtjax.data.batching.collate` (input_ids,
        attention_mask, vision_rows, grid_thw, second_per_grid_ts, is_image), one video or image each.
      completions: [N, T] sampled tokens (N = B * group); lengths: [N] tokens up to the EOS.
      advantages: [N]; micro_batches: M (divides N); batch_shards: devices the rows split over.
      loss_agg: the loss aggregation (sets each micro-batch's share).
    """
    prompt_ids = np.asarray(prompts["input_ids"])
    num_prompts = prompt_ids.shape[0]
    n, t = completions.shape
    if n != num_prompts * group or n % micro_batches:
        raise ValueError(f"{n} completions for {num_prompts} prompts x group {group}, "
                         f"micro_batches={micro_batches}")
    prompt_len = bucket_size(prompt_ids.shape[1], MIN_TEXT_BUCKET)
    pad_id = config.pad_token_id or 0
    prompt_ids, prompt_mask = left_pad(prompt_ids, prompts["attention_mask"], prompt_len, pad_id)
    comp_mask = (np.arange(t)[None, :] < np.asarray(lengths)[:, None]).astype(np.int64)  # [N, T]
    owner = np.arange(n) // group  # prompt of each row
    full_ids = np.concatenate([prompt_ids[owner], np.where(comp_mask, completions, pad_id)], axis=1)
    full_mask = np.concatenate([prompt_mask[owner], comp_mask], axis=1)
    length = bucket_size(full_ids.shape[1], MIN_TEXT_BUCKET)
    grids = np.asarray(prompts["grid_thw"]).reshape(-1, 3)
    seconds = np.asarray(prompts["second_per_grid_ts"], np.float32).reshape(-1)
    is_image = np.asarray(prompts["is_image"], bool).reshape(-1)
    pixel_rows = real_rows(prompts)  # [sum(rows), 1176] in prompt order
    rows = np.prod(grids, axis=1)
    row_start = np.concatenate([[0], np.cumsum(rows)])

    per = n // micro_batches
    micro_prompts = [np.unique(owner[m * per:(m + 1) * per]) for m in range(micro_batches)]
    unit = config.vision.merge_unit * batch_shards
    need = max(int(rows[p].sum()) for p in micro_prompts)
    patches = -(-bucket_size(need, MIN_PATCH_BUCKET) // unit) * unit
    frame = bucket_size(int((grids[:, 1] * grids[:, 2]).max()), config.vision.window_patches)

    micro = []
    for m, touched in enumerate(micro_prompts):
        sl = slice(m * per, (m + 1) * per)
        pixels = np.concatenate([pixel_rows[row_start[p]:row_start[p + 1]] for p in touched])
        vision_part = prepare_inputs(config, input_ids=prompt_ids[touched], attention_mask=prompt_mask[touched],
                                     pad_length=prompt_len, pad_patches=patches,
                                     **hf_vision(grids[touched], seconds[touched], is_image[touched], pixels))
        local = {p: i for i, p in enumerate(touched)}
        gather = np.full((per, length), -1, np.int32)
        gather[:, :prompt_len] = vision_part.vision_gather[[local[p] for p in owner[sl]]]
        ids = np.pad(full_ids[sl], ((0, 0), (0, length - full_ids.shape[1])), constant_values=pad_id)
        mask = np.pad(full_mask[sl], ((0, 0), (0, length - full_mask.shape[1])))
        positions, _ = get_rope_index(config, ids, mask,
                                      **hf_vision(grids[owner[sl]], seconds[owner[sl]], is_image[owner[sl]]))
        inputs = ModelInputs(input_ids=ids.astype(np.int32), segment_ids=mask.astype(np.int32),
                             position_ids=positions.astype(np.int32), vision_gather=gather,
                             vision=vision_part.vision.replace(frame_len=frame))
        completion_positions = np.zeros_like(mask, bool)
        completion_positions[:, prompt_len:prompt_len + t] = comp_mask[sl].astype(bool)
        targets, weights = shift_targets(ids, completion_positions)
        micro.append((inputs, targets, weights, np.asarray(advantages[sl], np.float32)))

    weights = np.stack([w for _, _, w, _ in micro])  # [M, b, L]
    if loss_agg == "token-mean":
        share = weights.sum(axis=(1, 2)) / max(weights.sum(), 1.0)
    else:  # per-completion means: completions with tokens count equally
        has = (weights.sum(axis=2) > 0).sum(axis=1).astype(np.float64)
        share = has / max(has.sum(), 1.0)
    stacked = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *[x[0] for x in micro])
    return RolloutBatch(inputs=stacked, targets=np.stack([x[1] for x in micro]), weights=weights,
                        advantages=np.stack([x[3] for x in micro]), share=share.astype(np.float32))


def place_rollout_batch(batch: RolloutBatch, mesh: Mesh) -> RolloutBatch:
    """Device arrays: rows (and vision rows) split over the batch axes, the rest replicated."""
    rows = NamedSharding(mesh, P(None, BATCH_AXES))
    replicated = NamedSharding(mesh, P())

    def put(path, x):
        if x is None:
            return None
        name = jax.tree_util.keystr(path)
        if name.endswith(".share"):
            spec = replicated
        elif name.endswith(".position_ids"):
            spec = NamedSharding(mesh, P(None, None, BATCH_AXES))
        else:
            spec = rows
        return jax.device_put(x, spec)

    return jax.tree_util.tree_map_with_path(put, batch)
