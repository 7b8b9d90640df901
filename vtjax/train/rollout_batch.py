"""Rollouts -> the micro-batched arrays of a GRPO update, built on the host (one block per process).

Row n = b * G + j holds prompt b followed by its completion j. The rows carry
no pixels: their ``vision_gather`` indexes the features of the step's prompts,
encoded once per step (``rollout.encode_fn``) and shared by the old and
reference log-prob passes and the update, so a video is neither re-encoded
nor re-differentiated G times, nor once per pass.

Each process builds the rows of its own prompts (whole groups), split into
``micro_batches`` slices; global micro-batch m is every process's slice m.
A micro-batch's weight in the loss (``loss_shares``) is computed inside the
program from the global weights, so the loss does not depend on how rows are
spread over processes.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from vtjax.data.batching import hf_vision
from vtjax.models.qwen2_5_vl import ModelInputs, Qwen25VLConfig, bucket_size, get_rope_index
from vtjax.models.qwen2_5_vl.inputs import MIN_TEXT_BUCKET
from vtjax.sampling import PromptBatch
from vtjax.train.batch import BATCH_AXES, place_blocks
from vtjax.train.loss import shift_targets


@flax.struct.dataclass
class RolloutBatch:
    """One GRPO update's data; arrays carry a leading micro-batch axis M, b rows each."""

    inputs: ModelInputs  # prompt + completion sequences [M, b, L], no vision: vision_gather indexes the
    #                      step's prompt features [Mp, E]
    targets: jax.Array  # [M, b, L] int32 next token at each position
    weights: jax.Array  # [M, b, L] float32, 1 where the next token is a completion token
    advantages: jax.Array  # [M, b] float32
    old_logp: jax.Array | None = None  # [M, b, L] policy log-probs at rollout time (num_iterations > 1)
    ref_logp: jax.Array | None = None  # [M, b, L] reference policy log-probs (beta > 0)


def build_rollout_batch(config: Qwen25VLConfig, prompts: PromptBatch, raw: dict, completions: np.ndarray,
                        lengths: np.ndarray, advantages: np.ndarray, *, group: int,
                        micro_batches: int) -> RolloutBatch:
    """Host arrays of this process's rows of a GRPO update.

    Args:
      prompts: this process's B prompts as sampled (host ``PromptBatch``, left-padded to the agreed length,
        gather indices already offset into the step's global features).
      raw: the same prompts' collated batch (grid_thw, second_per_grid_ts, is_image: for positions).
      completions: [N, T] sampled tokens (N = B * group); lengths: [N] tokens up to the EOS.
      advantages: [N]; micro_batches: M (divides N).
    """
    prompt_ids = np.asarray(prompts.inputs.input_ids)
    prompt_mask = np.asarray(prompts.inputs.segment_ids)
    prompt_gather = np.asarray(prompts.inputs.vision_gather)
    num_prompts, prompt_len = prompt_ids.shape
    n, t = completions.shape
    if n != num_prompts * group or n % micro_batches:
        raise ValueError(f"{n} completions for {num_prompts} prompts x group {group}, "
                         f"micro_batches={micro_batches}")
    pad_id = config.pad_token_id or 0
    comp_mask = (np.arange(t)[None, :] < np.asarray(lengths)[:, None]).astype(np.int64)  # [N, T]
    owner = np.arange(n) // group  # prompt of each row
    length = bucket_size(prompt_len + t, MIN_TEXT_BUCKET)
    tail = length - prompt_len - t
    ids = np.pad(np.concatenate([prompt_ids[owner], np.where(comp_mask, completions, pad_id)], axis=1),
                 ((0, 0), (0, tail)), constant_values=pad_id)  # [N, L]
    mask = np.pad(np.concatenate([prompt_mask[owner], comp_mask], axis=1), ((0, 0), (0, tail)))
    gather = np.full((n, length), -1, np.int32)
    gather[:, :prompt_len] = prompt_gather[owner]
    positions, _ = get_rope_index(config, ids, mask, **hf_vision(np.asarray(raw["grid_thw"])[owner],
                                                                 np.asarray(raw["second_per_grid_ts"])[owner],
                                                                 np.asarray(raw["is_image"])[owner]))
    completion_positions = np.zeros_like(mask, bool)
    completion_positions[:, prompt_len:prompt_len + t] = comp_mask.astype(bool)
    targets, weights = shift_targets(ids, completion_positions)
    per = n // micro_batches

    def split(x, axis=0):  # rows -> [M, b, ...] (positions [3, N, L] -> [M, 3, b, L])
        x = np.asarray(x)
        return np.moveaxis(x.reshape(x.shape[:axis] + (micro_batches, per) + x.shape[axis + 1:]), axis, 0)

    inputs = ModelInputs(input_ids=split(ids.astype(np.int32)), segment_ids=split(mask.astype(np.int32)),
                         position_ids=split(positions.astype(np.int32), axis=1), vision_gather=split(gather))
    return RolloutBatch(inputs=inputs, targets=split(targets), weights=split(weights),
                        advantages=split(np.asarray(advantages, np.float32)))


def rollout_partition_specs(batch: RolloutBatch) -> RolloutBatch:
    """PartitionSpec of every RolloutBatch leaf: rows over the batch axes."""
    rows = P(None, BATCH_AXES)
    inputs = ModelInputs(input_ids=rows, segment_ids=rows, position_ids=P(None, None, BATCH_AXES),
                         vision_gather=rows)
    optional = lambda x: None if x is None else rows  # noqa: E731
    return RolloutBatch(inputs=inputs, targets=rows, weights=rows, advantages=rows,
                        old_logp=optional(batch.old_logp), ref_logp=optional(batch.ref_logp))


def place_rollout_batch(batch: RolloutBatch, mesh: Mesh, num_blocks: int) -> RolloutBatch:
    """Global device arrays from every process's block (rows over the batch axes)."""
    return place_blocks(batch, rollout_partition_specs(batch), mesh, num_blocks)


def loss_shares(weights: jax.Array, loss_agg: str) -> jax.Array:
    """[M] weight of each micro-batch in the loss, from the global completion weights [M, b, L].

    token-mean: its share of the completion tokens; the per-completion means: its share of the
    completions that have tokens. Summing share_m * (micro-batch m's loss) gives the full-batch loss.
    """
    if loss_agg == "token-mean":
        counts = jnp.sum(weights, axis=(1, 2))
    else:
        counts = jnp.sum(jnp.any(weights > 0, axis=2), axis=1).astype(jnp.float32)
    return counts / jnp.maximum(jnp.sum(counts), 1.0)
