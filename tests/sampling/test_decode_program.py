"""The compiled decode loop reads each layer's weights and caches where they lie: no step slices or copies a
weight, and none copies a generated-token cache before updating it in place."""

from __future__ import annotations

import functools
import re

import jax

from tests.sampling.test_sampler import CONFIG, video_batch
from vtjax.models.qwen2_5_vl import abstract_params
from vtjax.sampling import programs, prompt_batch, sampling_settings
from vtjax.sampling.sampler import cache_widths


def _computation(hlo: str, name: str) -> str:
    start = hlo.index(f"\n%{name} ")
    return hlo[start:hlo.index("\n}", start)]


def _decode_loops(settings) -> list[str]:
    """The HLO bodies of the loops that run decode_step (a scan over layers would be one; the others are
    top-p's), in program order, compiled for this machine's backend."""
    params = abstract_params(CONFIG)
    inputs = video_batch("left")
    prompts = prompt_batch(CONFIG, inputs["input_ids"], inputs["attention_mask"], settings.pad_token_id,
                           **{k: inputs[k] for k in ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts")})
    prefill, decode = programs(CONFIG, settings)
    hidden, cache = jax.eval_shape(prefill, params, prompts.inputs, None)
    hlo = decode.lower(params, hidden, cache, prompts.inputs.segment_ids, prompts.deltas,
                       jax.random.PRNGKey(0)).compile().as_text()
    loops = re.findall(r"while\([^)]*\), condition=%[\w.-]+, body=%([\w.-]+)", hlo)
    decode_loops = [body for body in map(functools.partial(_computation, hlo), loops) if "decode_step" in body]
    assert decode_loops, loops
    return decode_loops


def _decode_loop_lines(settings) -> list[str]:
    return "\n".join(_decode_loops(settings)).splitlines()


def _f32_ops(lines):
    """(name, shape, op, line) of every float32 instruction."""
    for line in lines:
        match = re.match(r"\s*(?:ROOT )?%([\w.-]+) = f32\[([\d,]*)\]\S* (\S+?)\(", line)
        if match:
            name, dims, op = match.groups()
            yield name, tuple(int(d) for d in dims.split(",") if d), op, line.strip()[:160]


def test_no_decode_step_copies_a_generated_cache():
    settings = sampling_settings(CONFIG, max_new_tokens=8, num_samples=2, temperature=1.0)
    rows = 2 * settings.num_samples  # video_batch has two prompts
    cache_shape = (rows, CONFIG.text.num_key_value_heads, settings.max_new_tokens, CONFIG.text.head_dim)
    copies = [line for _, shape, op, line in _f32_ops(_decode_loop_lines(settings))
              if shape == cache_shape and op == "copy"]
    assert not copies, "\n".join(copies)


def test_no_decode_step_slices_or_copies_a_weight():
    params = abstract_params(CONFIG)
    lines = _decode_loop_lines(sampling_settings(CONFIG, max_new_tokens=8, num_samples=2, temperature=1.0))
    layer_weight_shapes = {tuple(leaf.shape[1:]) for leaf in jax.tree.leaves(params["layers"]) if leaf.ndim >= 3}
    layer_weight_shapes |= {tuple(params["lm_head"]["kernel"].shape), tuple(params["embed_tokens"]["embedding"].shape)}
    moved = [line for name, shape, op, line in _f32_ops(lines)
             if shape in layer_weight_shapes and (op in ("copy", "slice", "dynamic-slice", "transpose")
                                                  or "slice" in name or "copy" in name)]
    assert not moved, "\n".join(moved)


def test_early_decode_steps_read_a_narrower_generated_cache():
    """max_new_tokens = 64 decodes in two loops: the first carries generated caches of 32 slots, the second
    of 64 (``cache_widths``); no loop carries another width."""
    settings = sampling_settings(CONFIG, max_new_tokens=64, num_samples=2, temperature=1.0)
    assert cache_widths(64) == (32, 64)
    rows, heads, head_dim = 2 * settings.num_samples, CONFIG.text.num_key_value_heads, CONFIG.text.head_dim
    loops = _decode_loops(settings)
    assert len(loops) == 2
    for body, width in zip(loops, (32, 64), strict=True):
        carried = set(re.findall(rf"f32\[{rows},{heads},(\d+),{head_dim}\]", body.strip().splitlines()[0]))
        assert carried == {str(width)}, (width, carried)
