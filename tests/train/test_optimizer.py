"""AdamW schedule, decay mask, clipping and freezing against closed forms and a numpy AdamW."""

from __future__ import annotations

import math

import jax
import numpy as np
import optax

from tests.train.conftest import tiny_config
from vtjax.models.qwen2_5_vl import Qwen25VLConfig, abstract_params
from vtjax.train.optimizer import decay_mask, frozen_mask, lr_schedule, make_optimizer


def _path_names(params, mask):
    return {jax.tree_util.keystr(p): bool(v) for p, v in jax.tree_util.tree_leaves_with_path(mask)}


def test_schedule_warmup_then_cosine():
    sched = lr_schedule(1e-3, num_steps=100, warmup_steps=10, end_lr_ratio=0.1)
    assert float(sched(0)) == 0.0
    np.testing.assert_allclose(float(sched(5)), 5e-4, rtol=1e-6)
    np.testing.assert_allclose(float(sched(10)), 1e-3, rtol=1e-6)
    frac = (55 - 10) / 90
    want = 1e-4 + (1e-3 - 1e-4) * 0.5 * (1 + math.cos(math.pi * frac))
    np.testing.assert_allclose(float(sched(55)), want, rtol=1e-5)
    np.testing.assert_allclose(float(sched(100)), 1e-4, rtol=1e-5)


def test_decay_and_freeze_masks():
    params = abstract_params(Qwen25VLConfig.tiny())
    decay = _path_names(params, decay_mask(params))
    assert decay["['layers']['q_proj']['kernel']"] and decay["['lm_head']['kernel']"]
    assert not decay["['layers']['q_proj']['bias']"]
    assert not decay["['norm']['scale']"] and not decay["['visual']['merger']['ln_q']['scale']"]
    assert not decay["['embed_tokens']['embedding']"]
    assert all(_path_names(params, decay_mask(params, decay_all=True)).values())
    frozen = _path_names(params, frozen_mask(params, "vision"))
    assert frozen["['visual']['patch_embed']['kernel']"] and frozen["['visual']['layers']['qkv']['kernel']"]
    assert not frozen["['visual']['merger']['fc1']['kernel']"] and not frozen["['layers']['o_proj']['kernel']"]
    merger = _path_names(params, frozen_mask(params, "merger"))
    assert [k for k, v in merger.items() if v] == [k for k in merger if k.startswith("['visual']['merger']")]


def _numpy_adamw(params, grads, *, lr, b1, b2, eps, wd, clip, decay):
    norm = math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads.values()))
    scale = min(1.0, clip / norm)
    out = {}
    for k, p in params.items():
        g = grads[k] * scale
        m, v = (1 - b1) * g, (1 - b2) * g * g
        # bias corrections 1 - b^t in float32, as the update is computed in float32
        m_hat, v_hat = m / (np.float32(1) - np.float32(b1)), v / (np.float32(1) - np.float32(b2))
        update = m_hat / (np.sqrt(v_hat) + eps) + (wd * p if decay[k] else 0.0)
        out[k] = p - lr * update
    return out


def test_one_step_matches_numpy_adamw():
    rng = np.random.default_rng(0)
    params = {"dense": {"kernel": rng.normal(size=(4, 3)).astype(np.float32),
                        "bias": rng.normal(size=(3,)).astype(np.float32)},
              "norm": {"scale": rng.normal(size=(3,)).astype(np.float32)}}
    grads = jax.tree_util.tree_map(lambda p: rng.normal(size=p.shape).astype(np.float32) * 3, params)
    warm = make_optimizer(tiny_config(**{"train.warmup_steps": 1}).train, params, num_steps=10)
    updates, _ = warm.update(grads, warm.init(params), params)  # warmup starts at lr 0: nothing moves
    assert all(not np.any(u) for u in jax.tree_util.tree_leaves(updates))

    tx = make_optimizer(tiny_config(**{"train.lr": 0.1, "train.warmup_steps": 0, "train.weight_decay": 0.5,
                                       "train.max_grad_norm": 1.0, "train.end_lr_ratio": 1.0}).train,
                        params, num_steps=10)
    updates, _ = tx.update(grads, tx.init(params), params)
    got = optax.apply_updates(params, updates)
    flat = lambda t: {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(t)}  # noqa: E731
    decay = flat(decay_mask(params))
    want = _numpy_adamw(flat(params), flat(grads), lr=0.1, b1=0.9, b2=0.999, eps=1e-8, wd=0.5, clip=1.0,
                        decay=decay)
    for k, v in flat(got).items():
        np.testing.assert_allclose(v, want[k], rtol=1e-5, atol=1e-7)


def test_frozen_parts_have_no_moments_and_do_not_move():
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map(lambda s: rng.normal(size=s.shape).astype(np.float32),
                                    abstract_params(Qwen25VLConfig.tiny()))
    train = tiny_config(**{"train.freeze": "vision", "train.warmup_steps": 0}).train
    tx = make_optimizer(train, params, num_steps=10)
    state = jax.jit(tx.init)(params)
    moments = sum(x.size for x in jax.tree_util.tree_leaves(state))
    total = sum(x.size for x in jax.tree_util.tree_leaves(params))
    vision = sum(x.size for x in jax.tree_util.tree_leaves(params["visual"]["layers"]))
    vision += params["visual"]["patch_embed"]["kernel"].size
    assert moments < 2 * total - 2 * vision + 10  # two moments per trainable param, none for the ViT
    grads = jax.tree_util.tree_map(np.ones_like, params)
    new = jax.jit(lambda g, s, p: optax.apply_updates(p, tx.update(g, s, p)[0]))(grads, state, params)
    np.testing.assert_array_equal(new["visual"]["layers"]["qkv"]["kernel"], params["visual"]["layers"]["qkv"]["kernel"])
    assert not np.array_equal(new["visual"]["merger"]["fc1"]["kernel"], params["visual"]["merger"]["fc1"]["kernel"])
