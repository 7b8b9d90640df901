"""The sharded step (fsdp=4, tensor=2 on 8 fake devices) equals the single-device step; non-finite guard."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from tests.train.conftest import FAST_COMPILE, tiny_config
from vtjax.train.batch import BatchBuilder
from vtjax.train.optimizer import lr_schedule, make_optimizer
from vtjax.sharding import make_mesh
from vtjax.train.state import TrainState, init_state, model_config, param_shapes, state_shardings
from vtjax.train.step import jit_train_step, make_train_step
from vtjax.train.synthetic import SyntheticIterator

STEPS = 2


def _setup(mesh, micro_batches, params=None, **overrides):
    # eps 1e-3: at 1e-8 Adam maps every gradient element to ~+-lr, so elements whose gradient is a near-
    # cancelling sum (small, with large relative rounding error) would dominate the comparison; with a
    # larger eps the update is ~linear in small gradients and the comparison is about the sharding.
    config = tiny_config(**{"train.micro_batches": micro_batches, "train.weight_decay": 0.1, "train.eps": 1e-3,
                            "train.warmup_steps": 0, "train.lr": 1e-2, **overrides})
    model_cfg = model_config(config)
    tx = make_optimizer(config.train, param_shapes(model_cfg), 10)
    shardings = state_shardings(model_cfg, tx, mesh)
    if params is None:
        params = jax.device_get(init_state(model_cfg, tx, mesh, seed=0).params)

    def fresh():  # the same starting point on every mesh, placed in this mesh's sharding
        placed = jax.device_put(params, shardings.params)
        return TrainState(step=jax.device_put(np.int32(0), shardings.step), params=placed,
                          opt_state=jax.jit(tx.init, out_shardings=shardings.opt_state)(placed))

    builder = BatchBuilder(model_cfg, mesh, micro_batches)
    data = SyntheticIterator(model_cfg, global_batch=8, shard=0, num_shards=1, seed=0, num_examples=8, text=32,
                             grid=(2, 4, 4))
    batches = [builder(next(data)) for _ in range(STEPS)]
    schedule = lr_schedule(1e-2, 10, 0, 0.0)
    step = jit_train_step(make_train_step(model_cfg, tx, schedule, config.train, mesh), shardings,
                          builder.shardings(batches[0]), mesh, compiler_options=FAST_COMPILE)
    return fresh, step, batches


@pytest.fixture(scope="module")
def single_device():
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    return _setup(mesh, micro_batches=1)


def test_sharded_step_equals_single_device(single_device):
    fresh, step, batches = single_device
    state = fresh()
    start = jax.device_get(state.params)
    mesh = make_mesh(1, 4, 2)
    sharded_fresh, sharded_step, sharded_batches = _setup(mesh, micro_batches=2, params=start)
    sharded_state = sharded_fresh()
    # the params really are split: a decoder MLP kernel over fsdp (embed) and tensor (mlp)
    spec = sharded_state.params["layers"]["mlp"]["gate_proj"]["kernel"].sharding.spec
    assert tuple(spec) == (None, "fsdp", "tensor")

    for i in range(STEPS):
        state, m1 = step(state, batches[i])
        sharded_state, m8 = sharded_step(sharded_state, sharded_batches[i])
        np.testing.assert_allclose(float(m8["loss"]), float(m1["loss"]), rtol=1e-5)
        np.testing.assert_allclose(float(m8["grad_norm"]), float(m1["grad_norm"]), rtol=1e-5)
        assert float(m1["target_tokens"]) == float(m8["target_tokens"]) == 8 * 16
    want, got = jax.device_get(state.params), jax.device_get(sharded_state.params)
    moved = jax.tree_util.tree_map(lambda a, b: float(np.abs(a - b).max()), want, start)
    assert min(jax.tree_util.tree_leaves(moved)) > 0  # every parameter was trained
    # Per parameter tensor, norm-wise (single elements with ~zero gradient are ill-conditioned, see eps).
    flat = jax.tree_util.tree_leaves_with_path
    for (path, w), g, s in zip(flat(want), jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(start), strict=True):
        name = jax.tree_util.keystr(path)
        assert np.linalg.norm(g - w) <= 1e-5 * np.linalg.norm(w), name
        assert np.linalg.norm((g - s) - (w - s)) <= 1e-4 * np.linalg.norm(w - s), name


def test_nonfinite_loss_leaves_state_untouched(single_device):
    fresh, step, batches = single_device
    state = fresh()
    poisoned = batches[0].replace(weights=batches[0].weights * np.nan)
    before = jax.device_get((state.params, state.opt_state))
    state, metrics = step(state, poisoned)
    assert not bool(metrics["finite"]) and np.isnan(float(metrics["loss"]))
    after = jax.device_get((state.params, state.opt_state))
    for a, b in zip(jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(after), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(state.step) == 1


def test_frozen_vision_state_is_sharded_and_trains():
    """train.freeze="vision" on (fsdp=4, tensor=2): moments sharded like their params, the ViT does not move."""
    mesh = make_mesh(1, 4, 2)
    fresh, step, batches = _setup(mesh, micro_batches=1, **{"train.freeze": "vision"})
    state = fresh()
    shardings = jax.tree_util.tree_leaves_with_path(jax.tree_util.tree_map(lambda x: x.sharding, state.params))
    by_path = {jax.tree_util.keystr(p): s for p, s in shardings}
    moments = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(state.opt_state):
        name = jax.tree_util.keystr(path)
        owner = [p for p in by_path if name.endswith(p)]
        if owner and leaf.ndim:
            moments += 1
            assert leaf.sharding.is_equivalent_to(by_path[max(owner, key=len)], leaf.ndim), name
        assert "['visual']['layers']" not in name, name  # frozen: no moments for the ViT blocks
    assert moments > 0
    start = jax.device_get(state.params)
    for batch in batches:
        state, metrics = step(state, batch)
        assert np.isfinite(float(metrics["loss"]))
    end = jax.device_get(state.params)
    np.testing.assert_array_equal(end["visual"]["layers"]["qkv"]["kernel"], start["visual"]["layers"]["qkv"]["kernel"])
    assert not np.array_equal(end["layers"]["mlp"]["gate_proj"]["kernel"], start["layers"]["mlp"]["gate_proj"]["kernel"])
