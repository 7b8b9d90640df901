"""Host batches -> micro-batched ``ModelInputs`` -> global arrays sharded over the batch axes.

A data-pipeline batch (HF layout, this process's rows) is split into
``micro_batches`` slices, each turned into ``ModelInputs`` padded to sizes
every process agrees on, and stacked on a leading micro-batch axis.

Each process contributes one contiguous block of the global batch. Vision
features of a batch are one concatenated sequence, so a process's index
arrays (the vision gather index, the window permutation, segment ids) are
offset by its block's position: the global arrays then describe one valid
batch, the same for any number of processes.
"""

from __future__ import annotations

import math

import flax.struct
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from vtjax.data.batching import hf_vision
from vtjax.models.qwen2_5_vl import ModelInputs, Qwen25VLConfig, bucket_size, prepare_inputs
from vtjax.models.qwen2_5_vl.inputs import MIN_PATCH_BUCKET
from vtjax.sharding import BATCH_AXES
from vtjax.train.loss import LossWeighting, shift_targets
from vtjax.train.processes import agree



@flax.struct.dataclass
class TrainBatch:
    """One optimizer step's data; every array has a leading micro-batch axis M."""

    inputs: ModelInputs  # fields [M, ...] (position_ids [M, 3, b, L], patches [M, Np, 1176])
    targets: jax.Array  # [M, b, L] int32 next-token ids
    weights: jax.Array  # [M, b, L] float32, 1 on answer tokens


def batch_partition_specs(batch: TrainBatch) -> TrainBatch:
    """PartitionSpec of every TrainBatch leaf: the row / patch axis over BATCH_AXES."""
    rows = P(None, BATCH_AXES)
    inputs = batch.inputs
    vision = None if inputs.vision is None else vision_partition_specs(inputs.vision, leading=(None,))
    specs = ModelInputs(input_ids=rows, segment_ids=rows, position_ids=P(None, None, BATCH_AXES),
                        vision_gather=rows, vision=vision)
    return TrainBatch(inputs=specs, targets=rows, weights=rows)


def data_shard(mesh: Mesh) -> tuple[int, int]:
    """(index, count) of this process's block along the batch axes: which share of the data it loads.

    Processes holding the same block (a tensor axis spanning hosts) load the same data.
    """
    blocks = _process_blocks(mesh)
    starts = sorted({b[0] for b in blocks.values()})
    return starts.index(blocks[jax.process_index()][0]), len(starts)


def _process_blocks(mesh: Mesh) -> dict[int, tuple[int, int]]:
    """process -> (first, last+1) batch-shard index it holds; checks the blocks are contiguous."""
    shards = math.prod(mesh.shape[a] for a in BATCH_AXES)
    indices = NamedSharding(mesh, P(BATCH_AXES)).devices_indices_map((shards,))
    per_process: dict[int, set[int]] = {}
    for device, (index,) in indices.items():
        per_process.setdefault(device.process_index, set()).add(index.start or 0)
    blocks = {}
    for proc, starts in per_process.items():
        lo, hi = min(starts), max(starts) + 1
        if hi - lo != len(starts):
            raise ValueError(f"process {proc} holds non-contiguous batch shards {sorted(starts)}; order the "
                             "mesh devices by process (make_mesh does)")
        blocks[proc] = (lo, hi)
    return blocks


def local_shards(mesh: Mesh) -> int:
    lo, hi = _process_blocks(mesh)[jax.process_index()]
    return hi - lo


def offset_block(inputs: ModelInputs, block: int, frame: int) -> ModelInputs:
    """Shifts one block's vision indices to its place in the global batch (blocks of equal padded sizes).

    Block k's patches follow the patches of blocks 0..k-1 in the global vision sequence, so its
    window / gather indices move by k * (merged tokens per block) and its segment ids by k * patches.
    ``frame``: the agreed frame bucket (the largest of any block).
    """
    v = inputs.vision
    merged = v.window_index.shape[0]  # Mp of one block
    shift_m, shift_p = block * merged, block * v.patches.shape[0]
    seg = lambda s: np.where(s > 0, s + shift_p, 0).astype(np.int32)  # noqa: E731
    vision = v.replace(window_index=v.window_index + shift_m, reverse_index=v.reverse_index + shift_m,
                       window_segment_ids=seg(v.window_segment_ids),
                       frame_segment_ids=seg(v.frame_segment_ids), frame_len=max(frame, v.frame_len))
    gather = np.where(inputs.vision_gather >= 0, inputs.vision_gather + shift_m, -1).astype(np.int32)
    return inputs.replace(vision_gather=gather, vision=vision)


def place_blocks(host, specs, mesh: Mesh, num_blocks: int):
    """Global arrays from every process's block: leaf x goes to ``NamedSharding(mesh, spec)`` with the
    axis its spec splits over BATCH_AXES ``num_blocks`` times longer (this process holds its block)."""

    def place(x, spec):
        axis = list(spec).index(BATCH_AXES)
        shape = list(x.shape)
        shape[axis] *= num_blocks
        return jax.make_array_from_process_local_data(NamedSharding(mesh, spec), x, tuple(shape))

    with jax.transfer_guard_host_to_device("allow"):  # the step's intended copy (the loop disallows others)
        return jax.tree_util.tree_map(place, host, specs, is_leaf=lambda s: isinstance(s, P))


def vision_partition_specs(vision, leading: tuple = ()):
    """PartitionSpec of every VisionInputs leaf: patch / merged-token rows over BATCH_AXES."""
    rows = P(*leading, BATCH_AXES)
    return vision.replace(patches=rows, window_index=rows, reverse_index=rows, window_segment_ids=rows,
                          frame_segment_ids=rows, rotary_coords=rows)


class BatchBuilder:
    """Turns this process's data batches into global, sharded ``TrainBatch`` arrays."""

    def __init__(self, config: Qwen25VLConfig, mesh: Mesh, micro_batches: int, *,
                 patch_buckets: tuple[int, ...] | None = None, loss_weighting: LossWeighting = LossWeighting.TOKEN):
        self.config = config
        self.mesh = mesh
        self.micro_batches = micro_batches
        self.patch_buckets = patch_buckets  # padded vision rows per micro-batch; None: the bucket series
        self.loss_weighting = LossWeighting(loss_weighting)
        self.block, self.num_blocks = data_shard(mesh)
        self.local_shards = local_shards(mesh)

    def _micro_of_examples(self, batch: dict) -> np.ndarray:
        """[E] the micro-batch of each example (vision item); rows are split into equal slices."""
        num = batch["input_ids"].shape[0]
        if num % self.micro_batches:
            raise ValueError(f"this process's batch of {num} rows is not divisible by "
                             f"train.micro_batches={self.micro_batches}")
        rows = batch.get("example_row", np.arange(num))  # one example per row unless packed
        return np.asarray(rows) // (num // self.micro_batches)

    def local_sizes(self, batch: dict) -> np.ndarray:
        """[text length, patches per micro-batch, frame bucket] this process needs."""
        grids = np.asarray(batch["grid_thw"]).reshape(-1, 3)
        rows = np.bincount(self._micro_of_examples(batch), weights=np.prod(grids, axis=1),
                           minlength=self.micro_batches)  # [M]
        unit = self.config.vision.merge_unit * self.local_shards
        patches = -(-bucket_size(int(rows.max()), MIN_PATCH_BUCKET, self.patch_buckets) // unit) * unit
        frame = bucket_size(int((grids[:, 1] * grids[:, 2]).max()), self.config.vision.window_patches)
        return np.asarray([batch["input_ids"].shape[1], patches, frame], np.int64)

    def host_batch(self, batch: dict, sizes: np.ndarray) -> TrainBatch:
        """This process's block as numpy, offsets applied, padded to the agreed ``sizes``."""
        length, patches, frame = (int(s) for s in sizes)
        micro_of = self._micro_of_examples(batch)  # [E]
        per = batch["input_ids"].shape[0] // self.micro_batches
        item_rows = np.prod(np.asarray(batch["grid_thw"]).reshape(-1, 3), axis=1)  # [E] patch rows of each item
        item_offsets = np.concatenate([[0], np.cumsum(item_rows)])
        packed = "segment_ids" in batch
        micro = []
        for m in range(self.micro_batches):
            sl = slice(m * per, (m + 1) * per)
            items = np.flatnonzero(micro_of == m)  # contiguous: examples are listed in row order
            ids = np.asarray(batch["input_ids"][sl])
            vision = {}
            if items.size:
                pixels = batch["vision_rows"][item_offsets[items[0]]:item_offsets[items[-1] + 1]]
                vision = hf_vision(batch["grid_thw"][items], batch["second_per_grid_ts"][items],
                                   batch["is_image"][items], pixels)
            real = ({"segment_ids": batch["segment_ids"][sl]} if packed  # which tokens are real, per example
                    else {"attention_mask": batch["attention_mask"][sl]})
            inputs = prepare_inputs(self.config, input_ids=ids, pad_length=length, pad_patches=patches,
                                    **real, **vision)
            inputs = self._offset(inputs, frame)
            mask = np.pad(np.asarray(batch["loss_mask"][sl], bool), ((0, 0), (0, length - ids.shape[1])))
            if "example_mask" in batch:
                mask &= np.asarray(batch["example_mask"][sl], bool)[:, None]
            targets, weights = shift_targets(np.asarray(inputs.input_ids), mask, np.asarray(inputs.segment_ids),
                                             self.loss_weighting)
            micro.append(TrainBatch(inputs=inputs, targets=targets, weights=weights))
        return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *micro)

    def _offset(self, inputs: ModelInputs, frame: int) -> ModelInputs:
        if inputs.vision is None:
            raise ValueError("a training batch without vision rows: every SFT example must have a video or image")
        return offset_block(inputs, self.block, frame)

    def to_global(self, host: TrainBatch) -> TrainBatch:
        """Assembles every process's block into global arrays sharded by ``batch_partition_specs``."""
        return place_blocks(host, batch_partition_specs(host), self.mesh, self.num_blocks)

    def shardings(self, host: TrainBatch):
        """NamedShardings of the global batch (for the step's ``in_shardings``)."""
        return jax.tree_util.tree_map(lambda s: NamedSharding(self.mesh, s), batch_partition_specs(host),
                                      is_leaf=lambda s: isinstance(s, P))

    def __call__(self, batch: dict) -> TrainBatch:
        """Global TrainBatch for one data batch (all processes call it together)."""
        sizes, _ = agree(self.local_sizes(batch))
        return self.to_global(self.host_batch(batch, sizes))
