"""GRPO: rollout batches agree with the sampler, the loss gradient with finite differences, and a
short run raises the reward."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.parity.hf_reference import random_pixels, vision_run
from vtjax.train.metrics import MetricsLogger
from vtjax.data import batching
from vtjax.models.qwen2_5_vl import Qwen25VL, Qwen25VLConfig, init_params
from vtjax.rl import rewards
from vtjax.sampling import generate, prompt_batch, sampling_settings
from vtjax.train import grpo, grpo_config
from vtjax.train.config import ConfigError
from vtjax.train.grpo_step import batch_logprobs_fn, policy_logprobs_fn
from vtjax.train.rollout_batch import RolloutLayout, build_rollout_batch, loss_shares
from vtjax.rl.grpo import grpo_loss

CONFIG = Qwen25VLConfig.tiny()
GROUP = 3


def prompts(kinds=("video", "video")) -> dict:
    """Two prompts in the data pipeline's collated layout; `kinds` says which carries an image."""
    rng = np.random.default_rng(0)
    grids = [(1 if kinds[0] == "image" else 2, 4, 8), (1, 8, 4)]
    rows = [[5, 6, 7] + vision_run(CONFIG, kinds[0], grids[0]) + [8, 9],
            [10] + vision_run(CONFIG, kinds[1], grids[1]) + [11, 12, 13, 14]]
    length = max(map(len, rows))
    ids = np.full((2, length), CONFIG.pad_token_id)
    mask = np.zeros((2, length), np.int64)
    for r, row in enumerate(rows):
        ids[r, :len(row)], mask[r, :len(row)] = row, 1  # right padding, as the data pipeline pads
    is_image = np.array([k == "image" for k in kinds])
    return dict(input_ids=ids, attention_mask=mask, vision_rows=random_pixels(rng, CONFIG, grids),
                grid_thw=np.array(grids), second_per_grid_ts=np.where(is_image, 0.0, [1.0, 2.0]).astype(np.float32),
                is_image=is_image)


def encode(params, vision):
    return Qwen25VL(CONFIG).apply({"params": params}, vision, method=Qwen25VL.encode_vision)


@pytest.fixture(scope="module", params=[("video", "video"), ("image", "video")], ids=["videos", "image+video"])
def rollout(request):
    """(params, prompts, the generate() output, the update's rollout batch) for two prompts x GROUP."""
    params = init_params(CONFIG, 1)
    collated = prompts(request.param)
    hf, _ = batching.model_inputs(collated)  # what the public sampler takes: images and videos apart
    out = generate(CONFIG, params, **hf, max_new_tokens=6, num_samples=GROUP, temperature=1.0, seed=2,
                   eos_token_ids=[7])
    settings = sampling_settings(CONFIG, max_new_tokens=6, num_samples=GROUP, temperature=1.0, eos_token_ids=[7])
    host = prompt_batch(CONFIG, collated["input_ids"], collated["attention_mask"], settings.pad_token_id,
                        **{k: v for k, v in hf.items() if k not in ("input_ids", "attention_mask")})
    advantages = np.linspace(-1.0, 1.0, 2 * GROUP).astype(np.float32)
    batches = {layout: build_rollout_batch(CONFIG, host, collated, out["tokens"], out["lengths"], advantages,
                                           group=GROUP, micro_batches=2, layout=layout) for layout in RolloutLayout}
    return params, host, out, batches


@pytest.mark.parametrize("layout", list(RolloutLayout), ids=lambda x: x.value)
def test_training_sequences_reproduce_the_sampler_logprobs(rollout, layout):
    """Positions, the step's shared vision features and targets of the update match what the sampler saw."""
    params, host, out, batches = rollout
    batch = batches[layout]
    features = encode(params, host.inputs.vision)
    logp = np.asarray(batch_logprobs_fn(CONFIG, chunk=16)(params, batch, features))  # [M, b, T]
    weights = np.asarray(batch.weights)
    per = weights.shape[1]
    for n in range(2 * GROUP):
        m, row = divmod(n, per)
        got = logp[m, row][weights[m, row] > 0]
        np.testing.assert_allclose(got, out["logprobs"][n, :out["lengths"][n]], atol=1e-4)
    np.testing.assert_allclose(float(jnp.sum(loss_shares(batch.weights, "seq-mean-token-mean"))), 1.0, rtol=1e-6)


def test_shared_prefix_layout_holds_each_prompt_once(rollout):
    """One sequence per group, G completions after one prompt; log-probs equal the repeated layout's."""
    params, host, out, batches = rollout
    repeated, shared = batches[RolloutLayout.REPEATED], batches[RolloutLayout.SHARED_PREFIX]
    prompt_len = host.inputs.input_ids.shape[1]
    assert shared.inputs.input_ids.shape[:2] == (2, 1) and repeated.inputs.input_ids.shape[:2] == (2, GROUP)
    tokens = np.asarray(shared.inputs.segment_ids[:, 0] > 0).sum(axis=1)  # per group
    groups = np.asarray(out["lengths"]).reshape(2, GROUP).sum(axis=1)
    np.testing.assert_array_equal(tokens, np.asarray(host.inputs.segment_ids > 0).sum(axis=1) + groups)
    assert shared.inputs.shared_prefix.prefix_len == prompt_len
    features = encode(params, host.inputs.vision)
    logprobs = batch_logprobs_fn(CONFIG, chunk=16)
    weights = np.asarray(repeated.weights) > 0
    np.testing.assert_array_equal(weights, np.asarray(shared.weights) > 0)
    np.testing.assert_allclose(np.asarray(logprobs(params, shared, features))[weights],
                               np.asarray(logprobs(params, repeated, features))[weights], atol=1e-5)


@pytest.mark.parametrize("layout", list(RolloutLayout), ids=lambda x: x.value)
def test_loss_gradient_matches_finite_differences(rollout, layout):
    """The loss's gradient, through the shared vision features into the tower, against central differences."""
    params, host, _, batches = rollout
    logprobs = policy_logprobs_fn(CONFIG, chunk=16)
    ref = jax.tree_util.tree_map(lambda x: x * 1.05, params)
    mb = jax.tree_util.tree_map(lambda x: x[0], batches[layout])
    vision = host.inputs.vision
    ref_logp = logprobs(ref, mb.inputs, mb.scored, encode(ref, vision))
    old_logp = logprobs(params, mb.inputs, mb.scored, encode(params, vision)) - 0.1  # clipping on

    def loss(p):
        logp = logprobs(p, mb.inputs, mb.scored, encode(p, vision))
        value, _ = grpo_loss(logp, old_logp, ref_logp, mb.advantages, mb.weights, beta=0.04)
        return value

    direction = jax.tree_util.tree_map(lambda x: jnp.asarray(
        np.random.default_rng(x.size).standard_normal(x.shape), x.dtype), params)
    analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree_util.tree_leaves(jax.grad(loss)(params)),
                                                     jax.tree_util.tree_leaves(direction), strict=True))
    eps = 1e-3
    shifted = lambda s: jax.tree_util.tree_map(lambda x, d: x + s * eps * d, params, direction)  # noqa: E731
    numeric = (loss(shifted(1.0)) - loss(shifted(-1.0))) / (2 * eps)
    np.testing.assert_allclose(float(analytic), float(numeric), rtol=2e-2, atol=1e-4)


def test_short_run_raises_the_reward(tmp_path, monkeypatch):
    @rewards.register_reward("test_low_ids")
    def low_ids(text, record):  # share of completion tokens among the 128 lowest ids (chance 1/4)
        del record
        ids = [int(x) for x in text.split()]
        return float(np.mean([i < 128 for i in ids])) if ids else 0.0

    monkeypatch.setitem(rewards.REWARDS, "test_low_ids", low_ids)
    from configs import tiny_grpo  # noqa: PLC0415

    config = tiny_grpo.get_config()
    config.rl.reward_weights = "test_low_ids=1.0"
    config.train.lr = 1e-2
    config.train.num_steps = 25
    config.log.every_steps = 1
    seen = []
    original = MetricsLogger.step
    monkeypatch.setattr(MetricsLogger, "step",
                        lambda self, step, scalars: (seen.append(scalars["reward_mean"]),
                                                     original(self, step, scalars))[1])
    result = grpo.run(config, str(tmp_path))
    assert result.step == 25 and result.status == "done"
    assert np.mean(seen[-5:]) >= np.mean(seen[:5]) + 0.25, seen
    assert (tmp_path / "checkpoints").is_dir() or any(tmp_path.iterdir())


@pytest.mark.parametrize("field,value,message", [
    ("rl.group_size", 1, "rl.group_size"),
    ("rl.max_new_tokens", 0, "rl.max_new_tokens"),
    ("rl.top_p", 1.5, "rl.top_p"),
    ("rl.reward_weights", "acuracy=1", "acuracy"),
    ("rl.loss_agg", "mean", "rl.loss_agg"),
    ("rl.decode_rows_per_prompt", 9, "rl.decode_rows_per_prompt=9 must be in 1..rl.group_size=8"),
    ("rl.decode_cache_growth", -1, r"rl.decode_cache_growth=-1 must be at least 1 \(0 = automatic\)"),
    ("train.lr", -1.0, "train.lr"),
    ("rl.reward_modules", "no_such_reward_module", "rl.reward_modules: cannot import 'no_such_reward_module'"),
    ("rl.shared_prefix", "sometimes", "rl.shared_prefix='sometimes' must be one of"),
])
def test_bad_rl_fields_are_named(field, value, message):
    config = grpo_config.grpo_defaults()
    config.model.preset = "tiny"
    config.data.source = "synthetic"
    section, name = field.split(".")
    config[section][name] = value
    with pytest.raises(ConfigError, match=message):
        grpo_config.validate(config, num_devices=1)


def test_rollout_settings_carry_every_sampler_field():
    """The trainer and the AOT memory report both build the sampler's settings from rl.* here."""
    config = grpo_config.grpo_defaults()
    r = config.rl
    r.max_new_tokens, r.group_size, r.temperature, r.top_p, r.top_k = 40, 6, 0.7, 0.9, 5
    r.decode_rows_per_prompt, r.decode_cache_growth, r.decode_compact_rows = 2, 16, True
    settings = grpo_config.rollout_settings(config, CONFIG)
    assert settings == sampling_settings(CONFIG, max_new_tokens=40, num_samples=6, temperature=0.7, top_p=0.9,
                                         top_k=5, rows_per_prompt=2, cache_growth=16, compact_rows=True)
    assert (settings.rows_per_prompt, settings.cache_growth, settings.compact_rows) == (2, 16, True)


def test_prompts_that_do_not_split_over_processes_are_refused():
    config = grpo_config.grpo_defaults()
    config.model.preset, config.data.source = "tiny", "synthetic"
    config.train.batch_size, config.train.micro_batches = 6, 1  # 48 rows split over 4 processes, 6 prompts do not
    with pytest.raises(ConfigError, match=r"train.batch_size=6 prompts do not split over the 4 processes"):
        grpo_config.validate(config, num_devices=8, process_count=4)
    assert grpo_config.validate(config, num_devices=6, process_count=3)["fsdp"] == 6


def test_shared_prefix_layout_follows_the_batch_split():
    """One sequence per prompt: auto shares when a micro-batch's prompts split over the data axes, falls back
    to repeated rows when they do not (or on cudnn); on refuses a batch that does not split."""
    config = grpo_config.grpo_defaults()
    config.model.preset, config.data.source = "tiny", "synthetic"
    config.train.batch_size, config.train.micro_batches = 8, 8  # 1 prompt per micro-batch, 8 data shards
    sizes = {"data": 1, "fsdp": 8, "tensor": 1}
    assert grpo_config.rollout_layout(config, sizes, 1) == RolloutLayout.REPEATED
    config.train.micro_batches = 1
    assert grpo_config.rollout_layout(config, sizes, 1) == RolloutLayout.SHARED_PREFIX
    config.model.attention_impl = "cudnn"
    assert grpo_config.rollout_layout(config, sizes, 1) == RolloutLayout.REPEATED
    config.model.attention_impl, config.rl.shared_prefix, config.train.micro_batches = "pallas", "on", 8
    with pytest.raises(ConfigError, match="rl.shared_prefix=on lays out one sequence per prompt"):
        grpo_config.validate(config, num_devices=8)
    config.rl.shared_prefix = "off"
    config.train.micro_batches = 1
    assert grpo_config.rollout_layout(config, sizes, 1) == RolloutLayout.REPEATED


def test_several_updates_per_step_keep_the_step_count_and_the_schedule(tmp_path, monkeypatch):
    """rl.num_iterations=2: each step makes two updates, but steps, checkpoints and the learning rate
    follow training steps (the schedule is over train.num_steps)."""
    from configs import tiny_grpo  # noqa: PLC0415
    from vtjax.train.optimizer import lr_schedule  # noqa: PLC0415

    config = tiny_grpo.get_config()
    config.train.num_steps, config.rl.num_iterations, config.log.every_steps = 3, 2, 1
    config.checkpoint.every_steps = 3
    seen = []
    original = MetricsLogger.step
    monkeypatch.setattr(MetricsLogger, "step",
                        lambda self, step, scalars: (seen.append((step, scalars["lr"])), original(self, step, scalars))[1])
    result = grpo.run(config, str(tmp_path))
    assert result.step == 3 and result.status == "done"
    schedule = lr_schedule(config.train.lr, 3, 0, config.train.end_lr_ratio)
    np.testing.assert_allclose([lr for _, lr in seen], [float(schedule(s)) for s in range(3)], rtol=1e-6)
    assert [s for s, _ in seen] == [1, 2, 3] and (tmp_path / "checkpoints" / "3").is_dir()
    assert float(schedule(2)) > 0  # the last step still learns
    import orbax.checkpoint as ocp  # noqa: PLC0415

    saved = ocp.StandardCheckpointer().restore(tmp_path / "checkpoints" / "3" / "state")
    assert int(saved["step"]) == 3  # what a resume starts from: training steps, not updates


def test_fewer_decode_rows_give_the_same_steps(tmp_path, monkeypatch):
    """rl.decode_rows_per_prompt=3 (continuous batching) with rl.decode_compact_rows draws the same
    completions as one row per sample, so rewards, lengths and losses follow; and it computes fewer rows."""
    from configs import tiny_grpo  # noqa: PLC0415

    runs, original = {}, MetricsLogger.step
    for rows in (0, 3):
        config = tiny_grpo.get_config()
        config.train.num_steps, config.log.every_steps, config.rl.decode_rows_per_prompt = 2, 1, rows
        config.rl.decode_compact_rows = rows > 0
        config.rl.max_new_tokens = 12
        seen = []
        monkeypatch.setattr(MetricsLogger, "step",
                            lambda self, step, scalars, seen=seen: (seen.append(scalars),
                                                                    original(self, step, scalars))[1])
        assert grpo.run(config, str(tmp_path / str(rows))).step == 2
        runs[rows] = seen
    for full, refilled in zip(runs[0], runs[3], strict=True):
        for name in ("reward_mean", "completion_length"):
            assert refilled[name] == full[name], name
        assert refilled["decode_finished_fraction"] <= full["decode_finished_fraction"]
        np.testing.assert_allclose(refilled["loss"], full["loss"], rtol=1e-4, atol=1e-6)


def test_one_update_from_either_layout_gives_the_same_parameters(rollout):
    """The GRPO update (reference KL, clipping, the tower trained through the shared features) from the
    shared-prefix layout moves every parameter as the repeated layout does (plain SGD: the step is the
    gradient itself, not Adam's normalisation of it)."""
    import optax  # noqa: PLC0415

    from vtjax.train.grpo_step import make_grpo_step  # noqa: PLC0415
    from vtjax.train.state import TrainState  # noqa: PLC0415

    params, host, _, batches = rollout
    config = grpo_config.grpo_defaults()
    t, r = config.train, config.rl
    t.loss_chunk, t.max_grad_norm = 16, 1e9
    tx = optax.sgd(1.0)
    step = jax.jit(make_grpo_step(CONFIG, tx, lambda count: 1.0, t, r))
    reference = jax.tree_util.tree_map(lambda x: x * 1.05, params)
    vision = host.inputs.vision
    logprobs = batch_logprobs_fn(CONFIG, chunk=16)
    moved = {}
    for layout, batch in batches.items():
        batch = batch.replace(ref_logp=logprobs(reference, batch, encode(reference, vision)))
        state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))
        new, metrics = step(state, batch, vision, encode(params, vision))
        assert np.isfinite(float(metrics["loss"]))
        moved[layout] = jax.tree_util.tree_map(lambda a, b: np.asarray(a, np.float64) - np.asarray(b, np.float64),
                                               new.params, params)
    flat = {k: np.concatenate([x.ravel() for x in jax.tree_util.tree_leaves(v)]) for k, v in moved.items()}
    repeated, shared = flat[RolloutLayout.REPEATED], flat[RolloutLayout.SHARED_PREFIX]
    assert np.linalg.norm(repeated) > 0
    assert np.linalg.norm(shared - repeated) <= 1e-5 * np.linalg.norm(repeated), (
        np.linalg.norm(shared - repeated) / np.linalg.norm(repeated))


def test_shared_prefix_logprobs_through_the_pallas_kernels(rollout):
    """The model's text attention on impl="pallas" (the Triton family, interpreted on this CPU) gives the
    shared-prefix layout the repeated layout's log-probs (XLA path)."""
    import dataclasses  # noqa: PLC0415

    params, host, _, batches = rollout
    features = encode(params, host.inputs.vision)
    kernels = CONFIG.replace(text=dataclasses.replace(CONFIG.text, attention_impl="pallas"))
    shared = batch_logprobs_fn(kernels, chunk=16)(params, batches[RolloutLayout.SHARED_PREFIX], features)
    repeated = batch_logprobs_fn(CONFIG, chunk=16)(params, batches[RolloutLayout.REPEATED], features)
    weights = np.asarray(batches[RolloutLayout.REPEATED].weights) > 0
    np.testing.assert_allclose(np.asarray(shared)[weights], np.asarray(repeated)[weights], atol=1e-5)
