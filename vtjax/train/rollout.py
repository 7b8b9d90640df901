"""GRPO rollouts as SPMD programs over global arrays: every process's prompts in, its own completions out.

Each process holds a contiguous block of the step's prompts (its data share,
whole groups). ``RolloutPrompts`` turns the blocks into one global
``PromptBatch``:

- vision rows stay where they were loaded: each process's patches, padded to
  sizes every process agreed on, are its block of a patch axis split over the
  batch axes, with the block's window / gather indices offset to their global
  place (as SFT's batches are built);
- the text side (ids, masks, positions, gather indices, rope deltas: a few
  integers per token) is exchanged between processes on the host and placed
  split over the batch axes when the prompt count divides them, replicated
  otherwise (e.g. 8 prompts on 16 batch shards).

The vision tower then runs once over the global patches (``grpo_step.encode_fn``), the
sampler prefills and decodes all N = B * G rows in one program, and each
process reads back the rows of its own prompts to decode and score on the host.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from vtjax.data.batching import hf_vision, real_rows
from vtjax.models.qwen2_5_vl import Qwen25VLConfig, bucket_size
from vtjax.models.qwen2_5_vl.inputs import MIN_PATCH_BUCKET, MIN_TEXT_BUCKET
from vtjax.sampling import PromptBatch, prompt_batch
from vtjax.train.batch import (BATCH_AXES, data_shard, local_shards, offset_block, place_blocks,
                               vision_partition_specs)


def gather_blocks(local: np.ndarray, block: int, num_blocks: int, axis: int = 0) -> np.ndarray:
    """Every block's ``local`` array (equal shapes), concatenated along ``axis`` in block order.

    Processes holding the same block (a tensor axis spanning hosts) hold the same data; one copy is kept.
    """
    if jax.process_count() == 1:
        return local
    tagged = multihost_utils.process_allgather(np.asarray(local))  # [processes, ...]
    blocks = multihost_utils.process_allgather(np.asarray([block]))  # [processes, 1]
    first = {}
    for proc, b in enumerate(np.asarray(blocks).reshape(-1).tolist()):
        first.setdefault(b, proc)
    if sorted(first) != list(range(num_blocks)):
        raise ValueError(f"blocks {sorted(first)} held by the processes do not cover 0..{num_blocks - 1}")
    return np.concatenate([np.asarray(tagged)[first[b]] for b in range(num_blocks)], axis=axis)


def host_copy(x: jax.Array) -> np.ndarray:
    """A replicated global array as numpy (every process holds all of it)."""
    return np.asarray(jax.device_get(x.addressable_data(0)))


class RolloutPrompts:
    """This process's prompt batches -> global ``PromptBatch`` arrays on the training mesh."""

    def __init__(self, config: Qwen25VLConfig, mesh: Mesh, pad_id: int):
        self.config, self.mesh, self.pad_id = config, mesh, pad_id
        self.block, self.num_blocks = data_shard(mesh)
        self.local_shards = local_shards(mesh)
        self.batch_shards = math.prod(mesh.shape[a] for a in BATCH_AXES)

    def local_sizes(self, raw: dict) -> np.ndarray:
        """[prompt length, patches, frame bucket] this process's prompts need (the step takes the max)."""
        grids = np.asarray(raw["grid_thw"]).reshape(-1, 3)
        mask = np.asarray(raw["attention_mask"]) > 0
        length = bucket_size(int(mask.sum(axis=1).max()), MIN_TEXT_BUCKET)
        unit = self.config.vision.merge_unit * self.local_shards
        patches = -(-bucket_size(int(np.prod(grids, axis=1).sum()), MIN_PATCH_BUCKET) // unit) * unit
        frame = bucket_size(int((grids[:, 1] * grids[:, 2]).max()), self.config.vision.window_patches)
        return np.asarray([length, patches, frame], np.int64)

    def host(self, raw: dict, sizes, vision_rows: np.ndarray | None = None) -> PromptBatch:
        """This process's prompts, left-padded to the agreed sizes, indices offset to the global batch.

        ``vision_rows``: replaces the batch's real patch rows (e.g. frames shuffled), same layout.
        """
        length, patches, frame = (int(s) for s in sizes)
        rows = real_rows(raw) if vision_rows is None else vision_rows
        vision = hf_vision(raw["grid_thw"], raw["second_per_grid_ts"], raw["is_image"], rows)
        local = prompt_batch(self.config, raw["input_ids"], raw["attention_mask"], self.pad_id, pad_length=length,
                             pad_patches=patches, **vision)
        return local.replace(inputs=offset_block(local.inputs, self.block, frame))

    def to_global(self, host: PromptBatch) -> PromptBatch:
        """Global arrays: vision rows by block over the batch axes, the text side on every process."""
        text = host.inputs.replace(vision=None)
        axes = text.replace(input_ids=0, segment_ids=0, position_ids=1, vision_gather=0)
        full_text = jax.tree_util.tree_map(
            lambda x, axis: gather_blocks(x, self.block, self.num_blocks, axis), text, axes)
        deltas = gather_blocks(host.deltas, self.block, self.num_blocks)
        split = deltas.shape[0] % self.batch_shards == 0
        specs = axes.replace(input_ids=P(BATCH_AXES) if split else P(), segment_ids=P(BATCH_AXES) if split else P(),
                             position_ids=P(None, BATCH_AXES) if split else P(),
                             vision_gather=P(BATCH_AXES) if split else P())
        placed = jax.tree_util.tree_map(self._from_full, full_text, specs, is_leaf=lambda s: isinstance(s, P))
        vision = place_blocks(host.inputs.vision, vision_partition_specs(host.inputs.vision), self.mesh,
                              self.num_blocks)
        return PromptBatch(inputs=placed.replace(vision=vision),
                           deltas=self._from_full(deltas, P(BATCH_AXES) if split else P()))

    def __call__(self, raw: dict, sizes, vision_rows: np.ndarray | None = None) -> PromptBatch:
        return self.to_global(self.host(raw, sizes, vision_rows))

    def _from_full(self, full: np.ndarray, spec: P) -> jax.Array:
        # every process holds the whole array: each places the parts its devices hold (an intended copy)
        with jax.transfer_guard_host_to_device("allow"):
            return jax.make_array_from_process_local_data(NamedSharding(self.mesh, spec), full, full.shape)

    def local_rows(self, x: np.ndarray, rows_per_prompt: int, prompts_per_block: int) -> np.ndarray:
        """This process's rows of a host array over all N = B * rows_per_prompt rows."""
        per = prompts_per_block * rows_per_prompt
        return x[self.block * per:(self.block + 1) * per]

    def row_sharding(self) -> NamedSharding:
        """Sample rows over the batch axes (the sampler's decode layout)."""
        return NamedSharding(self.mesh, P(BATCH_AXES))

    def feature_sharding(self) -> NamedSharding:
        """Vision features [Mp, E]: merged-token rows over the batch axes."""
        return NamedSharding(self.mesh, P(BATCH_AXES))
