"""LoRA training through `python -m vtjax.main`: adapters only train, the base never moves, GRPO needs no
reference copy."""

from __future__ import annotations

import gc
import json

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import torch
from transformers import Qwen2_5_VLForConditionalGeneration

from tests.train.conftest import read_metrics, run_main
from vtjax.convert.verify import random_multimodal_inputs
from vtjax.errors import CheckpointError
from vtjax.eval import inference
from vtjax.models.qwen2_5_vl import Qwen25VLConfig, abstract_params, forward, lora
from vtjax.rl import rewards
from vtjax.sharding import make_mesh
from vtjax.train import adapters, export, grpo
from vtjax.train import config as config_lib
from vtjax.train.config import ConfigError
from vtjax.train.metrics import MetricsLogger

# The decoder's projections and the LM head: a random tiny model's output layer must learn too (with the
# decoder alone it reaches a loss of ~5.3 in 50 steps).
LORA = {"train.lora.enabled": True, "train.lora.rank": 16, "train.lora.alpha": 32.0,
        "train.lora.targets": lora.DECODER_PROJECTIONS + "|^lm_head$"}


@pytest.fixture(scope="module")
def lora_sft_run(tmp_path_factory, records_overrides):
    workdir = tmp_path_factory.mktemp("lora_sft")
    proc = run_main(workdir, {**records_overrides, **LORA, "train.num_steps": STEPS, "train.lr": 1e-2,
                              "train.end_lr_ratio": 0.1, "log.every_steps": 1, "checkpoint.every_steps": STEPS},
                    arg="records", timeout=400)
    assert proc.returncode == 0, proc.output[-3000:]
    return workdir


STEPS = 50


def test_lora_sft_overfits_eight_examples(lora_sft_run):
    losses = [m["loss"] for m in read_metrics(lora_sft_run)]
    assert len(losses) == STEPS and 5.0 < losses[0] < 7.0
    assert losses[-1] < 0.1 * losses[0], losses


def test_checkpoint_holds_the_adapters_their_moments_and_the_base_pointer(lora_sft_run):
    step_dir = lora_sft_run / "checkpoints" / str(STEPS)
    saved = ocp.StandardCheckpointer().restore(step_dir / "state")
    leaves = _leaves(saved["params"])
    assert len(leaves) == 2 * 8 and all(lora.is_adapter(p) for p, _ in leaves)  # 7 decoder projections + head
    assert all(np.any(np.asarray(x)) for _, x in leaves)  # B moved off zero, A is random
    moments = [p for p, x in _leaves(saved["opt_state"]) if np.ndim(x)]  # (the scalar step counts aside)
    assert moments and all(lora.is_adapter(p) for p in moments)  # AdamW state for the adapters only
    base = json.loads((step_dir / "lora_base" / "base.json").read_text())
    assert base["init_from"] == "" and base["seed"] == 0 and base["fingerprint"] != 0


def test_export_merges_the_adapters_into_a_transformers_checkpoint(lora_sft_run, tmp_path):
    model_cfg, params, step = export.restore_training_params(lora_sft_run)
    assert step == STEPS and model_cfg.lora is not None
    export.export_hf(lora_sft_run, tmp_path / "hf", progress=False)
    inputs = random_multimodal_inputs(model_cfg, seed=1)
    ours = np.asarray(forward(model_cfg, params, **inputs))
    assert np.abs(ours - np.asarray(forward(model_cfg.replace(lora=None), params, **inputs))).max() > 1e-2
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp_path / "hf", torch_dtype=torch.float32).eval()
    with torch.no_grad():
        theirs = model(**{k: torch.as_tensor(v) for k, v in inputs.items()}).logits.numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_eval_runs_the_run_with_its_adapters_merged(lora_sft_run, records_overrides):
    from configs import tiny_eval  # noqa: PLC0415

    config = tiny_eval.get_config()
    config.model.from_workdir = str(lora_sft_run)
    config.data.tokenizer = records_overrides["data.tokenizer"]
    model = inference.load_model(config)
    model_cfg, params, _ = export.restore_training_params(lora_sft_run)
    assert model.config.lora is None  # merged: plain projections at inference
    inputs = random_multimodal_inputs(model_cfg, seed=2)
    np.testing.assert_allclose(np.asarray(forward(model.config, jax.device_get(model.params), **inputs)),
                               np.asarray(forward(model_cfg, params, **inputs)), atol=1e-4)


def test_adapters_refuse_another_base():
    params = {"norm": {"scale": np.ones(8, np.float32)}, "layers": {"q_proj": {"lora_a": np.ones((8, 2))}}}
    other = {"norm": {"scale": np.full(8, 1.01, np.float32)}}
    saved = adapters.base_record(params, "/ckpt/base_a", seed=0)
    adapters.check_base(saved, adapters.base_record(params, "/elsewhere/base_a_copy", seed=0), step=7)
    with pytest.raises(CheckpointError, match=r"step 7 holds LoRA adapters trained on the base '/ckpt/base_a', "
                                              r"but this run loads '/ckpt/base_b'"):
        adapters.check_base(saved, adapters.base_record(other, "/ckpt/base_b", seed=0), step=7)
    with pytest.raises(CheckpointError, match="holds full-model params"):
        adapters.check_base(None, saved, step=7)


def _leaves(tree):
    return jax.tree_util.tree_leaves_with_path(tree)


def test_bad_lora_fields_are_named():
    config = config_lib.sft_defaults()
    config.model.preset, config.data.source = "tiny", "synthetic"
    config.train.lora.enabled, config.train.lora.rank = True, 0
    with pytest.raises(ConfigError, match=r"train.lora.rank=0 must be at least 1"):
        config_lib.validate(config, num_devices=1)
    config.train.lora.rank, config.train.lora.targets = 8, "(q_proj"
    with pytest.raises(ConfigError, match=r"train.lora.targets='\(q_proj' is not a regex"):
        config_lib.validate(config, num_devices=1)


def _grpo_run(tmp_path, monkeypatch, *, steps: int, lora_on: bool):
    """tiny_grpo with a reward for low token ids; returns (reward means, most live copies of a base kernel)."""
    from configs import tiny_grpo  # noqa: PLC0415

    def low_ids(text, record):  # share of completion tokens among the 128 lowest ids (chance 1/4)
        del record
        ids = [int(x) for x in text.split()]
        return float(np.mean([i < 128 for i in ids])) if ids else 0.0

    monkeypatch.setitem(rewards.REWARDS, "test_lora_low_ids", low_ids)  # this test's only
    config = tiny_grpo.get_config()
    config.rl.reward_weights = "test_lora_low_ids=1.0"
    config.train.lr, config.train.num_steps, config.log.every_steps = 1e-2, steps, 1
    assert config.rl.beta > 0  # a KL reference is in use
    if lora_on:
        for key, value in LORA.items():
            config.train.lora[key.split(".")[-1]] = value
    kernel_shape = tuple(abstract_params(Qwen25VLConfig.tiny())["layers"]["q_proj"]["kernel"].shape)
    gc.collect()  # arrays other tests of this process still hold are counted out
    held = [a for a in jax.live_arrays() if a.shape == kernel_shape]  # kept alive: their ids stay theirs
    before = {id(a) for a in held}
    seen, copies = [], []
    original = MetricsLogger.step

    def step(self, step, scalars):  # between steps: the params, and a reference copy if there is one
        seen.append(scalars["reward_mean"])
        copies.append(sum(1 for a in jax.live_arrays() if a.shape == kernel_shape and id(a) not in before))
        return original(self, step, scalars)

    monkeypatch.setattr(MetricsLogger, "step", step)
    result = grpo.run(config, str(tmp_path))
    assert result.step == steps and result.status == "done"
    return seen, max(copies)


def test_lora_grpo_raises_the_reward_with_no_reference_copy(tmp_path, monkeypatch):
    rewards_seen, copies = _grpo_run(tmp_path, monkeypatch, steps=25, lora_on=True)
    assert np.mean(rewards_seen[-5:]) >= np.mean(rewards_seen[:5]) + 0.25, rewards_seen
    assert copies == 1  # the policy's base serves as the reference; no moments for frozen weights


def test_full_grpo_keeps_a_reference_copy(tmp_path, monkeypatch):
    """The contrast that shows the count above can see a copy: full fine-tuning holds the params, the
    reference copy and AdamW's two moments of every kernel."""
    _, copies = _grpo_run(tmp_path, monkeypatch, steps=1, lora_on=False)
    assert copies == 4


def test_adapter_dropout_changes_the_update_and_repeats_per_seed():
    """One SFT step from the same start: train.lora.dropout=0.5 moves B otherwise than 0.0 (B's gradient is
    (dropout(x) A)^T dy), and the same again repeats exactly (the masks follow seed and step)."""
    from tests.train.test_step import _setup  # noqa: PLC0415

    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    moved = []
    for rate in (0.0, 0.5, 0.5):
        fresh, step, batches = _setup(mesh, micro_batches=2, **{"train.lora.enabled": True, "train.lora.rank": 4,
                                                                 "train.lora.dropout": rate})
        state, metrics = step(fresh(), batches[0])
        assert bool(metrics["finite"])
        moved.append(np.asarray(state.params["layers"]["q_proj"]["lora_b"]))
    assert np.abs(moved[0]).max() > 0 and np.abs(moved[1] - moved[0]).max() > 1e-4
    np.testing.assert_array_equal(moved[1], moved[2])


def test_base_held_in_bfloat16_stays_put_while_the_adapters_train_in_float32():
    from tests.train.test_step import _setup  # noqa: PLC0415

    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    fresh, step, batches = _setup(mesh, micro_batches=1, **{"train.lora.enabled": True, "train.lora.rank": 4,
                                                             "train.lora.base_dtype": "bfloat16"})
    start = fresh()
    before = jax.device_get(start.params)
    state, metrics = step(start, batches[0])
    assert bool(metrics["finite"])
    for (path, old), new in zip(_leaves(before), jax.tree_util.tree_leaves(jax.device_get(state.params)),
                                strict=True):
        if lora.is_adapter(path):
            assert new.dtype == np.float32, jax.tree_util.keystr(path)
        else:
            assert new.dtype == jax.numpy.bfloat16, jax.tree_util.keystr(path)
            np.testing.assert_array_equal(np.asarray(new, np.float32), np.asarray(old, np.float32))
    moments = [x for p, x in _leaves(jax.device_get(state.opt_state)) if np.ndim(x)]
    assert moments and all(x.dtype == np.float32 for x in moments)
