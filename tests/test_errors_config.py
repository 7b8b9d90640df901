"""Config validation names each bad field with its value; a too-long warmup is clamped with a warning."""

from __future__ import annotations

import logging
import re

import pytest

from tests.train.conftest import tiny_config
from vtjax.train import grpo_config
from vtjax.train.config import ConfigError, validate
from vtjax.train.optimizer import _warn_clamped, lr_schedule, warmup_steps_for


@pytest.mark.parametrize("overrides, message", [
    ({"data.synthetic_grid": (2, 4)}, "data.synthetic_grid=(2, 4) must be 3 positive integers"),
    ({"data.synthetic_grid": (2, 0, 4)}, "data.synthetic_grid=(2, 0, 4) must be 3 positive integers"),
    ({"data.synthetic_grid": (2, 4, 5)}, "data.synthetic_grid=(2, 4, 5): h and w must be multiples of 2"),
    ({"data.synthetic_text": 0}, "data.synthetic_text=0 must be positive"),
    ({"model.preset": "8b"}, "model.preset='8b' is not a preset; choose one of ['3b', '7b', '32b', '72b', 'tiny']"),
    ({"model.dtype": "fp8"}, "model.dtype='fp8' must be one of"),
    ({"model.param_dtype": "int8"}, "model.param_dtype='int8' must be one of"),
    ({"model.attention_impl": "flash"}, "model.attention_impl='flash' must be one of"),
    ({"model.remat_policy": "always"}, "model.remat_policy='always' must be one of"),
    ({"train.b2": 1.0}, "train.b2=1.0 must be in [0, 1)"),
    ({"train.eps": 0.0}, "train.eps=0.0 must be positive"),
    ({"train.freeze": "vision,decoder"}, "train.freeze='vision,decoder' has unknown part(s) ['decoder']"),
    ({"train.micro_batches": 3}, "train.batch_size=8 is not divisible by train.micro_batches=3"),
    ({"mesh.tensor": 3}, "mesh.data=1, mesh.tensor=3 (product 3) do not divide the 8 devices"),
    ({"mesh.data": 2, "mesh.fsdp": 2}, "mesh.data*mesh.fsdp*mesh.tensor = 2*2*1 = 4 but there are 8 devices"),
    ({"data.max_bad_fraction": 1.5}, "data.max_bad_fraction=1.5 must be in [0, 1]"),
    ({"data.length_buckets": (64, -1)}, "data.length_buckets=(64, -1) must hold positive integers"),
])
def test_bad_fields_are_named_with_their_values(overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(tiny_config(**overrides), num_devices=8)
    assert message in str(err.value)


def test_records_fields_are_named_one_by_one(tmp_path):
    records = tmp_path / "r.jsonl"
    records.write_text("{}\n")
    base = {"data.source": "records", "data.train_files": str(records), "data.video_roots": str(tmp_path),
            "data.tokenizer": str(records)}
    validate(tiny_config(**base), num_devices=8)
    with pytest.raises(ConfigError, match=r"^data\.max_length=0 must be positive$"):
        validate(tiny_config(**base, **{"data.max_length": 0}), num_devices=8)
    packed = {**base, "data.packing": True, "train.num_steps": 4}
    validate(tiny_config(**packed), num_devices=8)
    bad = [({"train.num_steps": 0}, "step count is unknown until the data is read; set train.num_steps"),
           ({"data.token_budget": 32}, "data.token_budget=32 must be >= 64"),
           ({"train.loss_weighting": "sample"}, "train.loss_weighting='sample' must be one of ['token', 'example']"),
           ({"mode": "grpo"}, "data.packing=True packs SFT records; mode='grpo'")]
    for overrides, message in bad:
        with pytest.raises(ConfigError, match=re.escape(message)):
            validate(tiny_config(**{**packed, **overrides}), num_devices=8)
    with pytest.raises(ConfigError, match=re.escape("data.packing=True packs SFT records; mode='sft' with "
                                                    "data.source='synthetic'")):
        validate(tiny_config(**{"data.packing": True, "train.num_steps": 4}), num_devices=8)


def _grpo(**overrides):
    config = grpo_config.grpo_defaults()
    config.model.preset = "tiny"
    config.data.source = "synthetic"
    config.data.synthetic_grid = (2, 4, 4)
    for key, value in overrides.items():
        section, name = key.split(".")
        config[section][name] = value
    return config


def test_grpo_batch_errors_name_the_fields_the_user_set():
    # 2 prompts x 8 completions = 16 rows per step.
    with pytest.raises(ConfigError) as err:
        grpo_config.validate(_grpo(**{"train.batch_size": 2, "train.micro_batches": 3}), num_devices=1)
    assert str(err.value).startswith("train.batch_size*rl.group_size=2*8=16 is not divisible by "
                                     "train.micro_batches=3")
    # 16 rows / 2 micro-batches = 8 rows, not divisible by 3 data shards... use 6 devices on fsdp.
    with pytest.raises(ConfigError) as err:
        grpo_config.validate(_grpo(**{"train.batch_size": 2, "train.micro_batches": 2}), num_devices=6)
    assert "train.batch_size*rl.group_size=2*8=16 / train.micro_batches=2 = 8 rows" in str(err.value)
    assert "mesh.data*mesh.fsdp=6" in str(err.value)
    with pytest.raises(ConfigError, match=r"^train\.batch_size=-1 must be positive"):
        grpo_config.validate(_grpo(**{"train.batch_size": -1}), num_devices=1)
    assert grpo_config.validate(_grpo(**{"train.batch_size": 2, "train.micro_batches": 4}), num_devices=1)


def test_warmup_longer_than_the_run_is_clamped_with_a_warning(caplog):
    _warn_clamped.cache_clear()
    train = tiny_config(**{"train.warmup_steps": 50}).train
    with caplog.at_level(logging.WARNING, logger="vtjax.train"):
        assert warmup_steps_for(train, 20) == 20
        assert warmup_steps_for(train, 20) == 20  # the trainers ask twice; one warning
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "train.warmup_steps=50" in warnings[0] and "20 steps" in warnings[0]
    # Clamped, the schedule reaches the peak lr exactly at the last step (0 -> lr linearly over 20 steps).
    schedule = lr_schedule(1e-3, 20, warmup_steps_for(train, 20), 0.0)
    assert float(schedule(10)) == pytest.approx(0.5e-3)
    assert float(schedule(20)) == pytest.approx(1e-3)


def test_warmup_within_the_run_is_silent(caplog):
    _warn_clamped.cache_clear()
    with caplog.at_level(logging.WARNING, logger="vtjax.train"):
        assert warmup_steps_for(tiny_config(**{"train.warmup_steps": 20}).train, 20) == 20
        assert warmup_steps_for(tiny_config(**{"train.warmup_steps": 0, "train.warmup_ratio": 1.0}).train, 7) == 7
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
