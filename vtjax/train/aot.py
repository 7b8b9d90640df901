"""Ahead-of-time compilation of the SFT step from abstract inputs: memory per device, compile time.

Used by ``scripts/aot_memory.py`` to check that a configuration fits before
any accelerator is booked: nothing is allocated, weights are never read.
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding

from vtjax.models.qwen2_5_vl import ModelInputs, VisionInputs, bucket_size
from vtjax.train import config as config_lib
from vtjax.train.batch import TrainBatch, batch_partition_specs
from vtjax.train.optimizer import lr_schedule, make_optimizer
from vtjax.sharding import make_mesh
from vtjax.train.state import abstract_state, model_config, param_shapes, state_shardings, with_shardings
from vtjax.train.step import jit_train_step, make_train_step


def abstract_batch(model_cfg, *, micro_batches: int, rows: int, tokens: int, frames: int,
                   frame_patches: int) -> TrainBatch:
    """ShapeDtypeStructs of a TrainBatch: ``rows`` examples per micro-batch, one video each."""
    t = -(-frames // model_cfg.vision.temporal_patch_size)  # temporal patches per video
    patches = rows * t * frame_patches
    merged = patches // model_cfg.vision.merge_unit
    i32 = jnp.int32
    m, b, length = micro_batches, rows, tokens
    s = jax.ShapeDtypeStruct
    vision = VisionInputs(
        patches=s((m, patches, model_cfg.vision.patch_dim), jnp.float32), window_index=s((m, merged), i32),
        reverse_index=s((m, merged), i32), window_segment_ids=s((m, patches), i32),
        frame_segment_ids=s((m, patches), i32), rotary_coords=s((m, patches, 2), i32),
        frame_len=bucket_size(frame_patches, model_cfg.vision.window_patches))
    inputs = ModelInputs(input_ids=s((m, b, length), i32), segment_ids=s((m, b, length), i32),
                         position_ids=s((m, 3, b, length), i32), vision_gather=s((m, b, length), i32),
                         vision=vision)
    return TrainBatch(inputs=inputs, targets=s((m, b, length), i32), weights=s((m, b, length), jnp.float32))


def _bytes_per_device(tree) -> int:
    total = 0
    for leaf in jax.tree_util.tree_leaves(tree):
        shard = leaf.sharding.shard_shape(leaf.shape)
        total += math.prod(shard) * np.dtype(leaf.dtype).itemsize
    return total


def compile_report(config, *, frames: int, frame_patches: int, tokens: int) -> dict:
    """Compiles the step of ``config`` for abstract inputs; returns sizes (bytes per device) and times."""
    sizes = config_lib.mesh_sizes(config, jax.device_count())
    mesh = make_mesh(sizes["data"], sizes["fsdp"], sizes["tensor"])
    model_cfg = model_config(config)
    t = config.train
    rows = t.batch_size // t.micro_batches
    if rows % (sizes["data"] * sizes["fsdp"]):
        raise config_lib.ConfigError(f"train.batch_size={t.batch_size} does not split over the data axes")
    tx = make_optimizer(t, param_shapes(model_cfg), 1000)
    shapes = abstract_state(model_cfg, tx)
    shardings = state_shardings(model_cfg, tx, mesh, shapes)
    state = with_shardings(shapes, shardings)
    batch = abstract_batch(model_cfg, micro_batches=t.micro_batches, rows=rows, tokens=tokens, frames=frames,
                           frame_patches=frame_patches)
    batch_sh = jax.tree_util.tree_map(lambda spec: NamedSharding(mesh, spec), batch_partition_specs(batch),
                                      is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    batch = with_shardings(batch, batch_sh)
    step = jit_train_step(make_train_step(model_cfg, tx, lr_schedule(t.lr, 1000, 10, 0.0), t, mesh),
                          shardings, batch_sh, mesh)
    start = time.perf_counter()
    lowered = step.lower(state, batch)
    lower_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - start
    mem = compiled.memory_analysis()
    params_b = _bytes_per_device(state.params)
    opt_b = _bytes_per_device(state.opt_state)
    return {
        "preset": config.model.preset, "dtype": config.model.dtype, "remat": config.model.remat_policy,
        "batch": t.batch_size, "micro_batches": t.micro_batches, "tokens": tokens, "frames": frames,
        "params_gib": params_b / 2**30, "opt_state_gib": opt_b / 2**30,
        "arguments_gib": mem.argument_size_in_bytes / 2**30, "outputs_gib": mem.output_size_in_bytes / 2**30,
        "aliased_gib": mem.alias_size_in_bytes / 2**30, "activations_temp_gib": mem.temp_size_in_bytes / 2**30,
        "peak_estimate_gib": (mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
                              + mem.temp_size_in_bytes) / 2**30,
        "lower_s": lower_s, "compile_s": compile_s,
    }
