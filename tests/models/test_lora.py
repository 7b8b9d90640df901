"""LoRA adapters: a fresh adapter changes nothing, gradients match finite differences, merging is exact."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.sampling.test_sampler import video_batch
from vtjax.models.qwen2_5_vl import Qwen25VLConfig, forward, init_params, param_logical_axes, prepare_inputs
from vtjax.models.qwen2_5_vl import lora
from vtjax.models.qwen2_5_vl.model import Qwen25VL
from vtjax.sampling import generate

BASE = Qwen25VLConfig.tiny()
SPEC = lora.LoraSpec(rank=4, alpha=8.0, targets=lora.DECODER_PROJECTIONS + r"|^visual/layers/qkv$|^visual/merger/fc2$")
ADAPTED = BASE.replace(lora=SPEC)


@functools.lru_cache(maxsize=None)
def logits_fn(config: Qwen25VLConfig):
    return jax.jit(lambda params, inputs: Qwen25VL(config).apply({"params": params}, inputs))


def video_inputs():
    batch = video_batch("left")
    return prepare_inputs(BASE, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          pixel_values_videos=batch["pixel_values_videos"], video_grid_thw=batch["video_grid_thw"],
                          second_per_grid_ts=batch["second_per_grid_ts"])


def trained(params, scale=0.05, seed=1):
    """The params with every adapter leaf (B included) moved off its initial value."""
    leaves = [p for p, _ in jax.tree_util.tree_flatten_with_path(params)[0] if lora.is_adapter(p)]
    keys = dict(zip(map(jax.tree_util.keystr, leaves), jax.random.split(jax.random.PRNGKey(seed), len(leaves)),
                    strict=True))
    return jax.tree_util.tree_map_with_path(
        lambda p, x: x + scale * jax.random.normal(keys[jax.tree_util.keystr(p)], x.shape) if lora.is_adapter(p)
        else x, params)


@pytest.fixture(scope="module")
def params():
    return init_params(ADAPTED, 0)


def test_adapters_sit_on_the_selected_projections_and_shard_like_them(params):
    paths = {lora.module_path([getattr(k, "key", k) for k in p[:-1]])
             for p, _ in jax.tree_util.tree_flatten_with_path(params)[0] if lora.is_adapter(p)}
    expected = {f"layers/{n}" for n in ("q_proj", "k_proj", "v_proj", "o_proj", "mlp/gate_proj", "mlp/up_proj",
                                        "mlp/down_proj")} | {"visual/layers/qkv", "visual/merger/fc2"}
    assert paths == expected
    q = params["layers"]["q_proj"]
    layers, embed, heads, head_dim = q["kernel"].shape
    assert q["lora_a"].shape == (layers, embed, 4) and q["lora_b"].shape == (layers, 4, heads, head_dim)
    assert not np.any(np.asarray(q["lora_b"]))  # B starts at zero
    bound = 1 / np.sqrt(embed)  # PEFT's default A: uniform in +-1/sqrt(fan_in)
    assert 0.8 * bound < np.abs(np.asarray(q["lora_a"])).max() <= bound
    axes = param_logical_axes(ADAPTED)["layers"]["o_proj"]
    assert tuple(axes["kernel"]) == ("layers", "heads", "head_dim", "embed")
    assert tuple(axes["lora_a"]) == ("layers", "heads", "head_dim", None)
    assert tuple(axes["lora_b"]) == ("layers", None, "embed")


def test_fresh_adapters_leave_the_logits_exactly_unchanged(params):
    inputs = video_inputs()
    base = logits_fn(BASE)(params, inputs)  # adapters ignored
    adapted = logits_fn(ADAPTED)(params, inputs)
    np.testing.assert_array_equal(np.asarray(adapted), np.asarray(base))


def test_adapted_logits_equal_the_merged_model_and_a_numpy_projection(params):
    params = trained(params)
    inputs = video_inputs()
    adapted = np.asarray(logits_fn(ADAPTED)(params, inputs))
    merged = lora.merge(SPEC, params)
    assert not any(lora.is_adapter(p) for p, _ in jax.tree_util.tree_flatten_with_path(merged)[0])
    np.testing.assert_allclose(np.asarray(logits_fn(BASE)(merged, inputs)), adapted, atol=1e-5)
    assert np.abs(adapted - np.asarray(logits_fn(BASE)(params, inputs))).max() > 1e-2
    # One merged kernel by hand: W + alpha / r * A B, layer 1's o_proj [H, Dh, E].
    o = params["layers"]["o_proj"]
    a = np.asarray(o["lora_a"][1]).reshape(-1, 4)
    expected = np.asarray(o["kernel"][1]) + 2.0 * (a @ np.asarray(o["lora_b"][1])).reshape(o["kernel"].shape[1:])
    np.testing.assert_allclose(np.asarray(merged["layers"]["o_proj"]["kernel"][1]), expected, rtol=1e-6, atol=1e-7)


def test_adapter_gradients_match_central_differences(params):
    params = trained(params)
    inputs = video_inputs()
    base, adapters = lora.split(params)
    weights = jax.random.normal(jax.random.PRNGKey(7), logits_fn(ADAPTED)(params, inputs).shape)

    @jax.jit
    def loss(adapters):
        return jnp.sum(Qwen25VL(ADAPTED).apply({"params": lora.combine(base, adapters)}, inputs) * weights)

    grads = jax.jit(jax.grad(loss))(adapters)
    assert all(leaf is None or np.any(np.asarray(leaf)) for leaf in jax.tree.leaves(grads, is_leaf=lambda x: x is None))
    direction = jax.tree.map(lambda g: g / (jnp.linalg.norm(g) + 1e-12), grads)  # a unit step per leaf
    eps = 1e-2
    for name in ("q_proj", "o_proj"):
        for leaf in ("lora_a", "lora_b"):
            step = jax.tree.map(jnp.zeros_like, adapters)
            step["layers"][name][leaf] = direction["layers"][name][leaf]
            shifted = lambda s, step=step: jax.tree.map(lambda x, d: x + s * eps * d, adapters, step)  # noqa: E731
            numeric = (loss(shifted(1.0)) - loss(shifted(-1.0))) / (2 * eps)
            analytic = jnp.vdot(grads["layers"][name][leaf], step["layers"][name][leaf])
            np.testing.assert_allclose(float(analytic), float(numeric), rtol=2e-3)


def test_sampling_with_adapters_equals_the_merged_model(params):
    params = trained(params)
    batch = video_batch("left")
    kw = dict(max_new_tokens=8, num_samples=2, temperature=1.0, seed=4)
    adapted = generate(ADAPTED, params, **batch, **kw)
    merged = generate(BASE, lora.merge(SPEC, params), **batch, **kw)
    np.testing.assert_array_equal(adapted["tokens"], merged["tokens"])
    np.testing.assert_allclose(adapted["logprobs"], merged["logprobs"], atol=1e-5)
    hf_inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values_videos", "video_grid_thw",
                                      "second_per_grid_ts")}
    np.testing.assert_allclose(np.asarray(forward(ADAPTED, params, **hf_inputs)),
                               np.asarray(forward(BASE, lora.merge(SPEC, params), **hf_inputs)), atol=1e-5)


@pytest.mark.parametrize("kwargs,message", [
    (dict(rank=0), "rank=0"), (dict(dropout=1.0), "dropout=1.0"), (dict(targets="(q_proj"), "not a regex"),
])
def test_bad_specs_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lora.LoraSpec(**kwargs)


def test_rslora_scales_by_the_root_of_the_rank():
    assert lora.LoraSpec(rank=16, alpha=32.0).scale == 2.0
    assert lora.LoraSpec(rank=16, alpha=32.0, rslora=True).scale == 8.0


def test_dropout_applies_only_with_a_dropout_rng_and_repeats_per_key(params):
    config = BASE.replace(lora=dataclasses.replace(SPEC, dropout=0.5))
    params, inputs = trained(params), video_inputs()
    apply = jax.jit(lambda p, key: Qwen25VL(config).apply({"params": p}, inputs, rngs={"dropout": key}))
    plain = np.asarray(logits_fn(config)(params, inputs))  # no rng: no dropout (inference, old / reference)
    np.testing.assert_allclose(plain, np.asarray(logits_fn(ADAPTED)(params, inputs)), atol=1e-6)
    first = np.asarray(apply(params, jax.random.PRNGKey(1)))
    np.testing.assert_array_equal(first, np.asarray(apply(params, jax.random.PRNGKey(1))))
    assert np.abs(first - plain).max() > 1e-3
    assert np.abs(first - np.asarray(apply(params, jax.random.PRNGKey(2)))).max() > 1e-3
