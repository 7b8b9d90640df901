"""Bad config values fail in validation, before anything compiles, with a message naming the field."""

from __future__ import annotations

import jax
import pytest

from tests.train.conftest import tiny_config
from vtjax.train import sft
from vtjax.train.config import ConfigError, close_matches, parse_video_roots, sft_defaults, validate


@pytest.fixture
def compile_events():
    """Counts XLA compilations while a test runs."""
    events = []

    def listener(name, *args, **kwargs):
        if "compile" in name:
            events.append(name)

    jax.monitoring.register_event_duration_secs_listener(listener)
    yield events
    jax.monitoring.unregister_event_duration_listener(listener)


@pytest.mark.parametrize("overrides, field", [
    ({"train.lr": -1e-5}, "train.lr"),
    ({"mesh.tensor": 3}, "mesh"),  # 3 does not divide the 8 devices
    ({"mesh.data": 2, "mesh.fsdp": 2, "mesh.tensor": 1}, "mesh.data*mesh.fsdp*mesh.tensor"),
    ({"train.batch_size": 6, "mesh.fsdp": 4, "mesh.tensor": 2}, "train.batch_size"),
    ({"train.batch_size": 8, "train.micro_batches": 4, "mesh.fsdp": 4, "mesh.tensor": 2}, "train.batch_size"),
    ({"data.source": "records", "data.train_files": "/nonexistent/records.jsonl"}, "data.train_files"),
    ({"data.source": "records"}, "data.train_files"),
    ({"train.on_nonfinite": "ignore"}, "train.on_nonfinite"),
    ({"train.freeze": "vision,decoder"}, "train.freeze"),
    ({"model.init_from": "/nonexistent/ckpt"}, "model.init_from"),
])
def test_bad_values_fail_before_compiling(tmp_path, compile_events, overrides, field):
    config = tiny_config(**overrides)
    with pytest.raises(ConfigError) as err:
        sft.run(config, str(tmp_path))
    assert field in str(err.value)
    assert compile_events == []
    assert not (tmp_path / "checkpoints").exists()


def test_records_source_checks_video_roots_and_tokenizer(tmp_path, video_records):
    records, root, tok = video_records
    base = {"data.source": "records", "data.train_files": records}
    with pytest.raises(ConfigError, match="data.video_roots"):
        validate(tiny_config(**base), num_devices=8)
    with pytest.raises(ConfigError, match="data.tokenizer"):
        validate(tiny_config(**base, **{"data.video_roots": root}), num_devices=8)
    sizes = validate(tiny_config(**base, **{"data.video_roots": root, "data.tokenizer": tok}), num_devices=8)
    assert sizes == {"data": 1, "fsdp": 8, "tensor": 1}


def test_mesh_fill_and_defaults_are_valid():
    assert validate(tiny_config(**{"mesh.tensor": 2}), num_devices=8) == {"data": 1, "fsdp": 4, "tensor": 2}
    assert validate(tiny_config(**{"mesh.data": -1, "mesh.fsdp": 2}), num_devices=8)["data"] == 4


def test_typo_suggestions_and_roots():
    config = sft_defaults()
    assert close_matches("train.lrr", config)[0] == "train.lr"
    assert "train.batch_size" in close_matches("trian.batch_size", config)
    assert "checkpoint.every_steps" in close_matches("checkpoint.every_step", config)
    assert parse_video_roots("/videos") == {"*": "/videos"}
    assert parse_video_roots("A=/a, *=/b") == {"A": "/a", "*": "/b"}


def test_every_field_is_commented():
    import inspect

    from vtjax.train import config as config_module

    source = inspect.getsource(config_module.sft_defaults)
    assignments = [line for line in source.splitlines() if line.strip().startswith("c.") and " = " in line
                   and "ConfigDict()" not in line]
    assert assignments and all("  # " in line for line in assignments), [
        line for line in assignments if "  # " not in line]
