"""Ahead-of-time compilation of a whole GRPO step from abstract inputs: memory per device, compile time.

A GRPO step runs five programs (``grpo.GrpoObjective.step``): the vision pass,
the sampler's prefill and decode, the reference log-probs and the update.
Each is compiled for abstract params, optimizer state and inputs (shapes,
dtypes, shardings) on the configured mesh; nothing is allocated. A program's
own peak is XLA's (arguments + outputs - donated aliases + temporaries);
the step peak while it runs adds the arrays that stay resident across the
step without being its arguments (the optimizer state during the rollout,
the frozen reference during the update, the vision features and a training
tower's pullback from the vision pass to the update).
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from vtjax.models.qwen2_5_vl import ModelInputs, VisionInputs, bucket_size
from vtjax.models.qwen2_5_vl.inputs import MIN_TEXT_BUCKET
from vtjax.ops.attention import SharedPrefix
from vtjax.sampling import programs
from vtjax.train import config as config_lib
from vtjax.train.batch import BATCH_AXES, vision_partition_specs
from vtjax.train.grpo_step import batch_logprobs_fn, encode_fn, make_grpo_step, vision_trains
from vtjax.train.optimizer import lr_schedule, make_optimizer
from vtjax.train.grpo_config import rollout_layout, rollout_settings
from vtjax.train.rollout_batch import RolloutBatch, RolloutLayout, ScoredTokens, rollout_partition_specs
from vtjax.sharding import make_mesh
from vtjax.train.state import abstract_state, model_config, param_shapes, state_shardings, with_shardings
from vtjax.train.update import jit_update

GIB = 2**30


def bytes_per_device(tree) -> int:
    """Bytes one device holds of a tree of sharded abstract (or real) arrays."""
    total = 0
    for leaf in jax.tree_util.tree_leaves(tree):
        total += math.prod(leaf.sharding.shard_shape(leaf.shape)) * np.dtype(leaf.dtype).itemsize
    return total


def _abstract(mesh, shape, dtype, spec: P | None = None):
    return jax.ShapeDtypeStruct(shape, dtype, sharding=NamedSharding(mesh, P() if spec is None else spec))


def _outputs(fn, compiled, *args):
    """Abstract outputs of a compiled program, with the shardings it chose."""
    shapes = jax.eval_shape(fn, *args)
    return jax.tree_util.tree_map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                                  shapes, compiled.output_shardings)


def _compile(name: str, fn, *args) -> tuple[dict, object]:
    start = time.perf_counter()
    lowered = fn.lower(*args)
    lower_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - start
    mem = compiled.memory_analysis()
    peak = (mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
            + mem.temp_size_in_bytes)
    return {"program": name, "arguments_gib": mem.argument_size_in_bytes / GIB,
            "temp_gib": mem.temp_size_in_bytes / GIB, "program_peak_gib": peak / GIB,
            "lower_s": lower_s, "compile_s": compile_s}, compiled


def grpo_report(config, *, frames: int, frame_patches: int, prompt_text: int) -> list[dict]:
    """Compiles the GRPO step of ``config`` (one video per prompt of ``frames`` frames of ``frame_patches``
    14px patches, ``prompt_text`` text tokens around it) and returns one report per program."""
    sizes = config_lib.mesh_sizes(config, jax.device_count())
    mesh = make_mesh(sizes["data"], sizes["fsdp"], sizes["tensor"])
    model_cfg = model_config(config)
    t, r = config.train, config.rl
    tx = make_optimizer(t, param_shapes(model_cfg), 1000, r.num_iterations)
    shapes = abstract_state(model_cfg, tx)
    state = with_shardings(shapes, state_shardings(model_cfg, tx, mesh, shapes))
    shards = sizes["data"] * sizes["fsdp"]
    prompts, group, new_tokens, micro = t.batch_size, r.group_size, r.max_new_tokens, t.micro_batches
    v = model_cfg.vision
    per_video = -(-frames // v.temporal_patch_size) * frame_patches
    unit = v.merge_unit * shards
    patches = -(-prompts * per_video // unit) * unit
    merged = patches // v.merge_unit
    prompt_len = bucket_size(prompt_text + per_video // v.merge_unit, MIN_TEXT_BUCKET)
    length = bucket_size(prompt_len + new_tokens, MIN_TEXT_BUCKET)
    i32, f32 = jnp.int32, jnp.float32

    s = jax.ShapeDtypeStruct
    vision = VisionInputs(patches=s((patches, v.patch_dim), f32), window_index=s((merged,), i32),
                          reverse_index=s((merged,), i32), window_segment_ids=s((patches,), i32),
                          frame_segment_ids=s((patches,), i32), rotary_coords=s((patches, 2), i32),
                          frame_len=bucket_size(frame_patches, v.window_patches))
    vision_specs = vision_partition_specs(vision)
    vision = jax.tree_util.tree_map(lambda x, spec: _abstract(mesh, x.shape, x.dtype, spec), vision, vision_specs,
                                    is_leaf=lambda x: isinstance(x, jax.ShapeDtypeStruct))
    text = P(BATCH_AXES) if prompts % shards == 0 else P()
    prompt_inputs = ModelInputs(
        input_ids=_abstract(mesh, (prompts, prompt_len), i32, text),
        segment_ids=_abstract(mesh, (prompts, prompt_len), i32, text),
        position_ids=_abstract(mesh, (3, prompts, prompt_len), i32, P(None, *text)),
        vision_gather=_abstract(mesh, (prompts, prompt_len), i32, text))
    deltas = _abstract(mesh, (prompts,), i32, text)
    rows = NamedSharding(mesh, P(BATCH_AXES))
    reports = []
    lora_on = model_cfg.lora is not None  # the reference is then the policy's own base: no copy
    resident = {"opt_state": bytes_per_device(state.opt_state),
                "reference": bytes_per_device(state.params) if r.beta > 0 and not lora_on else 0}

    trains = vision_trains(shapes.params, t.freeze)
    encode = encode_fn(model_cfg, t.freeze, rows, with_pullback=trains)
    report, compiled = _compile("vision_pass", encode, state.params, vision)
    encoded = _outputs(encode, compiled, state.params, vision)
    features, pullback = encoded if trains else (encoded, None)
    resident["features"] = bytes_per_device(features)
    resident["pullback"] = bytes_per_device(pullback) if pullback is not None else 0
    reports.append((report, ("opt_state", "reference")))

    settings = rollout_settings(config, model_cfg)
    prefill, decode = programs(model_cfg, settings, rows)
    report, compiled = _compile("prefill", prefill, state.params, prompt_inputs, features)
    hidden, cache = _outputs(prefill, compiled, state.params, prompt_inputs, features)
    reports.append((report, ("opt_state", "reference", "pullback")))
    key = _abstract(mesh, (2,), jnp.uint32)
    report, _ = _compile("decode", decode, state.params, hidden, cache, prompt_inputs.segment_ids, deltas, key)
    reports.append((report, ("opt_state", "reference", "features", "pullback")))

    b = prompts * group // micro  # rows per micro-batch
    sequences, shared, scored = b, None, new_tokens
    layout = rollout_layout(config, sizes, 1)
    if layout == RolloutLayout.SHARED_PREFIX:  # one sequence per group, every completion at the full budget
        sequences, length = b // group, bucket_size(prompt_len + group * new_tokens, MIN_TEXT_BUCKET)
        scored = length - prompt_len
        shared = SharedPrefix(branch_ids=s((micro, sequences, length), i32), prefix_len=prompt_len,
                              max_branch_len=new_tokens)
    seq = (micro, sequences, length)
    batch = RolloutBatch(
        inputs=ModelInputs(input_ids=s(seq, i32), segment_ids=s(seq, i32),
                           position_ids=s((micro, 3, sequences, length), i32), vision_gather=s(seq, i32),
                           shared_prefix=shared),
        scored=ScoredTokens(positions=s((micro, sequences, scored), i32), tokens=s((micro, sequences, scored), i32),
                            index=s((micro, b, new_tokens), i32)),
        weights=s((micro, b, new_tokens), f32), advantages=s((micro, b), f32),
        ref_logp=s((micro, b, new_tokens), f32) if r.beta > 0 else None)
    batch = jax.tree_util.tree_map(lambda x, spec: _abstract(mesh, x.shape, x.dtype, spec), batch,
                                   rollout_partition_specs(batch),
                                   is_leaf=lambda x: isinstance(x, jax.ShapeDtypeStruct))
    resident["rollout_batch"] = bytes_per_device(batch)
    if r.beta > 0:
        logprobs = batch_logprobs_fn(model_cfg.replace(lora=None) if lora_on else model_cfg, t.loss_chunk,
                                     NamedSharding(mesh, P(None, BATCH_AXES)))
        report, _ = _compile("reference_logprobs", logprobs, state.params, batch.replace(ref_logp=None), features)
        # The policy's params stay resident beside a reference copy; with LoRA they are the argument itself.
        reports.append((report, ("opt_state", "pullback") + (() if lora_on else ("params",))))
        resident["params"] = bytes_per_device(state.params)

    step = make_grpo_step(model_cfg, tx, lr_schedule(t.lr, 1000, 0, 0.0), t, r)
    inputs = (batch, vision, features, pullback)
    update = jit_update(step, state_shardings(model_cfg, tx, mesh, shapes),
                        jax.tree_util.tree_map(lambda x: x.sharding, inputs), mesh)
    report, _ = _compile("update", update, state, *inputs)
    reports.append((report, ("reference",)))

    out = []
    for report, others in reports:
        extra = sum(resident.get(name, 0) for name in others)
        out.append({**report, "resident_other_gib": extra / GIB,
                    "step_peak_gib": report["program_peak_gib"] + extra / GIB,
                    "prompts": prompts, "group": group, "new_tokens": new_tokens, "frames": frames,
                    "prompt_tokens": prompt_len, "sequence_tokens": length, "micro_batches": micro,
                    "layout": layout.value,
                    "tower_trains": trains, "remat": config.model.remat_policy})
    return out
