"""Rollouts -> the micro-batched arrays of a GRPO update, built on the host (one block per process).

Two layouts of the same completions (``RolloutLayout``), with identical log-probs:

* repeated: sequence n = b * G + j is prompt b followed by its completion j;
* shared prefix: sequence b is prompt b followed by its G completions packed
  one after another (``ops.attention.SharedPrefix``: each completion sees the
  prompt and itself only; its positions continue from the prompt's end, as in
  decoding). A group costs prompt + G completions instead of G x (prompt +
  completion).

Whatever the layout, the loss arrays are per completion, [rows, T]: row
n = b * G + j is completion j of prompt b. ``ScoredTokens`` lists, per
sequence, the completion tokens the LM head scores and the position whose
hidden state predicts each, so only completion tokens pay for the LM head
(in the shared layout, every completion's first token is predicted at the
prompt's last position). The sequences carry no pixels:
their ``vision_gather`` indexes the features of the step's prompts, encoded
once per step (``rollout.encode_fn``) and shared by the old and reference
log-prob passes and the update.

Each process builds the rows of its own prompts (whole groups), split into
``micro_batches`` slices; global micro-batch m is every process's slice m.
A micro-batch's weight in the loss (``loss_shares``) is computed inside the
program from the global weights, so the loss does not depend on how rows are
spread over processes.
"""

from __future__ import annotations

import enum

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from vtjax.data.batching import hf_vision
from vtjax.models.qwen2_5_vl import ModelInputs, Qwen25VLConfig, bucket_size, get_rope_index
from vtjax.models.qwen2_5_vl.inputs import MIN_TEXT_BUCKET
from vtjax.ops.attention import SharedPrefix
from vtjax.sampling import PromptBatch
from vtjax.train.batch import BATCH_AXES, place_blocks


class RolloutLayout(enum.Enum):
    """How the update's sequences hold a group's prompt and completions."""

    REPEATED = "repeated"  # one sequence per completion: its prompt, then it
    SHARED_PREFIX = "shared_prefix"  # one sequence per group: the prompt once, then its G completions


@flax.struct.dataclass
class ScoredTokens:
    """The completion tokens of s sequences, K per sequence, that the LM head scores."""

    positions: jax.Array  # [..., s, K] int32 position in the sequence whose hidden state predicts token k
    tokens: jax.Array  # [..., s, K] int32 the token scored there
    index: jax.Array  # [..., b, T] int32 which of its sequence's K scores is completion token t of row n
    #                   (row n in sequence n // (b / s))


@flax.struct.dataclass
class RolloutBatch:
    """One GRPO update's data; arrays carry a leading micro-batch axis M: s sequences and b rows each."""

    inputs: ModelInputs  # the sequences [M, s, L], no vision: vision_gather indexes the step's prompt
    #                      features [Mp, E]; s = b (repeated) or b / G (shared prefix, with inputs.shared_prefix)
    scored: ScoredTokens  # [M, s, K] scored tokens, [M, b, T] their index per completion token
    weights: jax.Array  # [M, b, T] float32, 1 on the completion's tokens (up to and with its EOS)
    advantages: jax.Array  # [M, b] float32
    old_logp: jax.Array | None = None  # [M, b, T] policy log-probs at rollout time (num_iterations > 1)
    ref_logp: jax.Array | None = None  # [M, b, T] reference policy log-probs (beta > 0)


def shared_sequence_length(prompt_len: int, lengths: np.ndarray, group: int) -> int:
    """The bucketed sequence length of the shared-prefix layout for completion ``lengths`` [N]: the prompt
    plus the longest group's completions. Every process passes the global lengths, so all agree."""
    per_group = np.asarray(lengths).reshape(-1, group).sum(axis=1)
    return bucket_size(prompt_len + int(per_group.max(initial=0)), MIN_TEXT_BUCKET)


def build_rollout_batch(config: Qwen25VLConfig, prompts: PromptBatch, raw: dict, completions: np.ndarray,
                        lengths: np.ndarray, advantages: np.ndarray, *, group: int, micro_batches: int,
                        layout: RolloutLayout = RolloutLayout.REPEATED, length: int | None = None) -> RolloutBatch:
    """Host arrays of this process's rows of a GRPO update.

    Args:
      prompts: this process's B prompts as sampled (host ``PromptBatch``, left-padded to the agreed length,
        gather indices already offset into the step's global features).
      raw: the same prompts' collated batch (grid_thw, second_per_grid_ts, is_image: for positions).
      completions: [N, T] sampled tokens (N = B * group); lengths: [N] tokens up to the EOS.
      advantages: [N]; micro_batches: M (divides N; with the shared prefix, divides B).
      layout: the sequences' layout (module doc).
      length: the shared-prefix sequence length (``shared_sequence_length`` of every process's lengths);
        None computes it from these lengths.
    """
    prompt_ids = np.asarray(prompts.inputs.input_ids)
    num_prompts, prompt_len = prompt_ids.shape
    n, t = completions.shape
    if n != num_prompts * group or n % micro_batches:
        raise ValueError(f"{n} completions for {num_prompts} prompts x group {group}, "
                         f"micro_batches={micro_batches}")
    lengths = np.asarray(lengths)
    taken = np.arange(t)[None, :] < lengths[:, None]  # [N, T] the completions' tokens
    pad_id = config.pad_token_id or 0
    targets = np.where(taken, completions, pad_id).astype(np.int32)  # [N, T]
    if layout == RolloutLayout.SHARED_PREFIX:
        if num_prompts % micro_batches:
            raise ValueError(f"the shared-prefix layout splits whole groups: micro_batches={micro_batches} must "
                             f"divide the {num_prompts} prompts")
        length = length or shared_sequence_length(prompt_len, lengths, group)
        inputs, scored = _shared_sequences(config, prompts, raw, targets, lengths, group, length)
    else:
        inputs, scored = _repeated_sequences(config, prompts, raw, targets, taken, group)

    def split(x, axis=0):  # rows -> [M, b, ...] (positions [3, N, L] -> [M, 3, b, L])
        x = np.asarray(x)
        return np.moveaxis(x.reshape(x.shape[:axis] + (micro_batches, x.shape[axis] // micro_batches)
                                     + x.shape[axis + 1:]), axis, 0)

    shared = inputs.shared_prefix
    inputs = ModelInputs(input_ids=split(inputs.input_ids), segment_ids=split(inputs.segment_ids),
                         position_ids=split(inputs.position_ids, axis=1), vision_gather=split(inputs.vision_gather),
                         shared_prefix=None if shared is None else shared.replace(branch_ids=split(shared.branch_ids)))
    scored = ScoredTokens(positions=split(scored.positions.astype(np.int32)), tokens=split(scored.tokens),
                          index=split(scored.index.astype(np.int32)))
    return RolloutBatch(inputs=inputs, scored=scored,
                        weights=split(taken.astype(np.float32)), advantages=split(np.asarray(advantages, np.float32)))


def _repeated_sequences(config, prompts: PromptBatch, raw: dict, targets, taken, group):
    """(ModelInputs [N, L], ScoredTokens with K = T): sequence n is its prompt, then completion n.

    targets: [N, T] completion tokens (padding past the end); taken: [N, T] bool, the real ones."""
    prompt_ids = np.asarray(prompts.inputs.input_ids)
    prompt_mask = np.asarray(prompts.inputs.segment_ids)
    num_prompts, prompt_len = prompt_ids.shape
    n, t = targets.shape
    owner = np.arange(n) // group  # prompt of each row
    length = bucket_size(prompt_len + t, MIN_TEXT_BUCKET)
    tail = length - prompt_len - t
    ids = np.pad(np.concatenate([prompt_ids[owner], targets], axis=1), ((0, 0), (0, tail)),
                 constant_values=config.pad_token_id or 0)
    mask = np.pad(np.concatenate([prompt_mask[owner], taken], axis=1), ((0, 0), (0, tail)))  # [N, L]
    gather = np.full((n, length), -1, np.int32)
    gather[:, :prompt_len] = np.asarray(prompts.inputs.vision_gather)[owner]
    positions, _ = get_rope_index(config, ids, mask, **hf_vision(np.asarray(raw["grid_thw"])[owner],
                                                                 np.asarray(raw["second_per_grid_ts"])[owner],
                                                                 np.asarray(raw["is_image"])[owner]))
    scored = ScoredTokens(positions=np.broadcast_to(prompt_len - 1 + np.arange(t), (n, t)),  # token j: at Lp-1+j
                          tokens=targets, index=np.broadcast_to(np.arange(t), (n, t)))
    inputs = ModelInputs(input_ids=ids.astype(np.int32), segment_ids=mask.astype(np.int32),
                         position_ids=positions.astype(np.int32), vision_gather=gather)
    return inputs, scored


def _shared_sequences(config, prompts: PromptBatch, raw: dict, targets, lengths, group, length):
    """(ModelInputs [B, L] with ``shared_prefix``, ScoredTokens with K = L - Lp): sequence b is prompt b,
    then its G completions back to back; completion j's token i sits at the prompt's next position + i.
    Scored token k is the one at Lp + k, predicted at Lp + k - 1, or at Lp - 1 for a completion's first."""
    prompt_ids = np.asarray(prompts.inputs.input_ids)
    prompt_mask = np.asarray(prompts.inputs.segment_ids)
    num_prompts, prompt_len = prompt_ids.shape
    n, t = targets.shape
    longest_group = int(lengths.reshape(num_prompts, group).sum(axis=1).max(initial=0))
    if length < prompt_len + longest_group:
        raise ValueError(f"shared-prefix sequences of {length} tokens cannot hold a prompt of {prompt_len} and "
                         f"completions of {longest_group} tokens")
    prompt_positions, deltas = get_rope_index(
        config, prompt_ids, prompt_mask, **hf_vision(np.asarray(raw["grid_thw"]), np.asarray(raw["second_per_grid_ts"]),
                                                     np.asarray(raw["is_image"])))  # [3, B, Lp], [B]
    pad_id = config.pad_token_id or 0
    ids = np.full((num_prompts, length), pad_id, np.int32)
    segments = np.zeros((num_prompts, length), np.int32)
    branches = np.zeros((num_prompts, length), np.int32)
    positions = np.zeros((3, num_prompts, length), np.int64)
    gather = np.full((num_prompts, length), -1, np.int32)
    ids[:, :prompt_len], segments[:, :prompt_len] = prompt_ids, prompt_mask
    positions[:, :, :prompt_len] = prompt_positions
    gather[:, :prompt_len] = np.asarray(prompts.inputs.vision_gather)
    scored_positions = np.full((num_prompts, length - prompt_len), prompt_len - 1, np.int64)
    index = np.zeros((n, t), np.int64)
    for b in range(num_prompts):
        start = prompt_len
        for j in range(group):
            row, size = b * group + j, int(lengths[b * group + j])
            span = slice(start, start + size)
            ids[b, span], segments[b, span], branches[b, span] = targets[row, :size], 1, j + 1
            positions[:, b, span] = prompt_len + deltas[b] + np.arange(size)  # as decoding places them
            scored_positions[b, start - prompt_len + 1:start - prompt_len + size] = np.arange(start, start + size - 1)
            index[row, :size] = np.arange(start - prompt_len, start - prompt_len + size)
            start += size
    shared = SharedPrefix(branch_ids=branches, prefix_len=prompt_len, max_branch_len=t)
    inputs = ModelInputs(input_ids=ids, segment_ids=segments, position_ids=positions.astype(np.int32),
                         vision_gather=gather, shared_prefix=shared)
    return inputs, ScoredTokens(positions=scored_positions, tokens=ids[:, prompt_len:], index=index)


def rollout_partition_specs(batch: RolloutBatch) -> RolloutBatch:
    """PartitionSpec of every RolloutBatch leaf: rows over the batch axes."""
    rows = P(None, BATCH_AXES)
    shared = batch.inputs.shared_prefix
    inputs = ModelInputs(input_ids=rows, segment_ids=rows, position_ids=P(None, None, BATCH_AXES),
                         vision_gather=rows, shared_prefix=None if shared is None else shared.replace(branch_ids=rows))
    optional = lambda x: None if x is None else rows  # noqa: E731
    scored = ScoredTokens(positions=rows, tokens=rows, index=rows)
    return RolloutBatch(inputs=inputs, scored=scored, weights=rows, advantages=rows,
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
