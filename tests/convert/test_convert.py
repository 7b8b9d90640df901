"""HF <-> Orbax conversion: bit-exact round trips, logits parity, loading in transformers, bad inputs."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from transformers import Qwen2_5_VLForConditionalGeneration

from tests.parity.hf_reference import build_hf_model
from vtjax.convert import cli, load_hf
from vtjax.convert.verify import random_multimodal_inputs, verify_against_transformers
from vtjax.models.qwen2_5_vl import Qwen25VLConfig, forward

TINY = Qwen25VLConfig.tiny()
TIED = TINY.replace(text=dataclasses.replace(TINY.text, tie_word_embeddings=True))


def new_style_name(name: str) -> str:
    """transformers >= 4.52 module names."""
    if name.startswith("model."):
        return "model.language_model." + name[len("model."):]
    if name.startswith("visual."):
        return "model." + name
    return name


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """{(tied, naming): directory} of saved tiny random HF checkpoints."""
    root = tmp_path_factory.mktemp("hf")
    dirs = {}
    for tied, config in ((False, TINY), (True, TIED)):
        model = build_hf_model(config, seed=int(tied))
        legacy = root / f"legacy_tied{tied}"
        model.save_pretrained(legacy)
        (legacy / "tokenizer.json").write_text('{"stand-in": true}')
        dirs[(tied, "legacy")] = legacy
        renamed = root / f"new_tied{tied}"
        shutil.copytree(legacy, renamed)
        tensors = load_file(renamed / "model.safetensors")
        save_file({new_style_name(k): v for k, v in tensors.items()}, renamed / "model.safetensors",
                  metadata={"format": "pt"})
        dirs[(tied, "new")] = renamed
    return dirs


def run_cli(*args) -> int:
    return cli.main([*map(str, args), "--quiet"])


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("naming", ["legacy", "new"])
def test_round_trip_is_bit_exact(hf_dirs, tmp_path, tied, naming):
    source = hf_dirs[(tied, naming)]
    assert run_cli("hf-to-orbax", "--hf-dir", source, "--out", tmp_path / "ckpt") == 0
    assert (tmp_path / "ckpt" / "tokenizer.json").exists()
    assert run_cli("orbax-to-hf", "--ckpt", tmp_path / "ckpt", "--out", tmp_path / "hf",
                   "--max-shard-size", "300KB") == 0
    exported = {}
    index = json.loads((tmp_path / "hf" / "model.safetensors.index.json").read_text())
    for shard in sorted(set(index["weight_map"].values())):
        exported.update(load_file(tmp_path / "hf" / shard))
    original = {new_style_name(k) if False else k: v for k, v in load_file(hf_dirs[(tied, "legacy")] /
                                                                           "model.safetensors").items()}
    assert set(exported) == set(original)  # legacy names; no lm_head when tied
    assert ("lm_head.weight" in exported) == (not tied)
    for name, value in original.items():
        assert exported[name].dtype == value.dtype and np.array_equal(exported[name], value), name


def test_exported_checkpoint_loads_in_transformers_with_same_logits(hf_dirs, tmp_path):
    source = hf_dirs[(False, "legacy")]
    assert run_cli("hf-to-orbax", "--hf-dir", source, "--out", tmp_path / "ckpt", "--verify") == 0
    assert run_cli("orbax-to-hf", "--ckpt", tmp_path / "ckpt", "--out", tmp_path / "hf", "--verify") == 0
    model, info = Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    config, params = load_hf(source, progress=False)
    inputs = random_multimodal_inputs(config, seed=3)
    with torch.no_grad():
        theirs = model.eval()(**{k: torch.as_tensor(v) for k, v in inputs.items()}).logits.numpy()
    ours = forward(config, params, **inputs)
    assert np.abs(ours - theirs).max() <= 1e-4


def test_bfloat16_conversion_verifies(hf_dirs, tmp_path):
    assert run_cli("hf-to-orbax", "--hf-dir", hf_dirs[(True, "new")], "--out", tmp_path / "ckpt",
                   "--dtype", "bfloat16", "--verify") == 0
    assert run_cli("orbax-to-hf", "--ckpt", tmp_path / "ckpt", "--out", tmp_path / "hf") == 0
    tensors = load_file(tmp_path / "hf" / "model.safetensors")
    assert all(str(v.dtype) == "bfloat16" for v in tensors.values())


def test_verify_detects_a_wrong_weight(hf_dirs):
    config, params = load_hf(hf_dirs[(False, "legacy")], progress=False)
    params["layers"]["o_proj"]["kernel"] = params["layers"]["o_proj"]["kernel"].at[1].multiply(1.01)
    report = verify_against_transformers(config, params, hf_dirs[(False, "legacy")])
    assert not report.ok and report.max_abs_diff > 1e-4


def test_sharded_input_with_index(hf_dirs, tmp_path):
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(hf_dirs[(False, "legacy")])
    model.save_pretrained(tmp_path / "sharded", max_shard_size="200KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    _, params = load_hf(tmp_path / "sharded", progress=False)
    _, reference = load_hf(hf_dirs[(False, "legacy")], progress=False)
    assert np.array_equal(params["visual"]["layers"]["qkv"]["kernel"], reference["visual"]["layers"]["qkv"]["kernel"])


# ---------------------------------------------------------------- bad input


def converted_fails(source, out, capsys, *extra) -> str:
    assert run_cli("hf-to-orbax", "--hf-dir", source, "--out", out, *extra) == 2
    assert not out.exists() or not any(out.iterdir()) or "keep" in out.name
    return capsys.readouterr().err


def broken_copy(hf_dirs, tmp_path, name="broken"):
    target = tmp_path / name
    shutil.copytree(hf_dirs[(False, "legacy")], target)
    return target


def test_missing_config(hf_dirs, tmp_path, capsys):
    source = broken_copy(hf_dirs, tmp_path)
    (source / "config.json").unlink()
    assert "config.json" in converted_fails(source, tmp_path / "out", capsys)


def test_missing_and_unexpected_keys_are_listed(hf_dirs, tmp_path, capsys):
    source = broken_copy(hf_dirs, tmp_path)
    tensors = load_file(source / "model.safetensors")
    tensors.pop("model.layers.1.mlp.up_proj.weight")
    tensors["model.layers.1.mlp.extra_proj.weight"] = np.zeros((2, 2), np.float32)
    save_file(tensors, source / "model.safetensors")
    err = converted_fails(source, tmp_path / "out", capsys)
    assert "model.layers.1.mlp.up_proj.weight" in err and "model.layers.1.mlp.extra_proj.weight" in err


def test_wrong_shape_names_tensor_and_shapes(hf_dirs, tmp_path, capsys):
    source = broken_copy(hf_dirs, tmp_path)
    tensors = load_file(source / "model.safetensors")
    tensors["visual.blocks.2.attn.qkv.weight"] = np.zeros((96, 30), np.float32)
    save_file(tensors, source / "model.safetensors")
    err = converted_fails(source, tmp_path / "out", capsys)
    assert "visual.blocks.2.attn.qkv.weight" in err and "(96, 32)" in err and "(96, 30)" in err


def test_index_pointing_at_missing_shard(hf_dirs, tmp_path, capsys):
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(hf_dirs[(False, "legacy")])
    model.save_pretrained(tmp_path / "sharded", max_shard_size="200KB")
    shard = sorted((tmp_path / "sharded").glob("model-*.safetensors"))[1]
    shard.unlink()
    assert shard.name in converted_fails(tmp_path / "sharded", tmp_path / "out", capsys)


def test_pickle_checkpoint_is_refused(tmp_path, hf_dirs, capsys):
    source = broken_copy(hf_dirs, tmp_path)
    (source / "model.safetensors").unlink()
    (source / "pytorch_model.bin").write_bytes(b"not loaded")
    err = converted_fails(source, tmp_path / "out", capsys)
    assert "pytorch_model.bin" in err and "safe_serialization" in err


def test_existing_output_needs_overwrite(hf_dirs, tmp_path, capsys):
    out = tmp_path / "keep"
    out.mkdir()
    (out / "precious.txt").write_text("mine")
    err = converted_fails(hf_dirs[(False, "legacy")], out, capsys)
    assert "--overwrite" in err and (out / "precious.txt").exists()
    assert run_cli("hf-to-orbax", "--hf-dir", hf_dirs[(False, "legacy")], "--out", out, "--overwrite") == 0
    assert not (out / "precious.txt").exists() and (out / "params").is_dir()


def test_failure_midway_leaves_nothing(hf_dirs, tmp_path, monkeypatch):
    def crash(directory, *args, **kwargs):
        (directory / "params").mkdir()
        (directory / "config.json").write_text("{}")
        raise OSError("disk full")

    monkeypatch.setattr(cli, "write_params_checkpoint", crash)
    with pytest.raises(OSError, match="disk full"):
        run_cli("hf-to-orbax", "--hf-dir", hf_dirs[(False, "legacy")], "--out", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.partial-*"))


def test_restore_places_params_in_the_mesh_sharding(hf_dirs, tmp_path):
    from vtjax.convert import restore_params
    from vtjax.sharding import make_mesh

    assert run_cli("hf-to-orbax", "--hf-dir", hf_dirs[(False, "legacy")], "--out", tmp_path / "ckpt") == 0
    mesh = make_mesh(fsdp=4, tensor=2)  # the 8 fake CPU devices of tests/conftest.py
    params = restore_params(tmp_path / "ckpt", mesh=mesh)
    q = params["layers"]["q_proj"]["kernel"]  # [layers, embed, heads, head_dim]
    assert tuple(q.sharding.spec) == (None, "fsdp", "tensor", None)
    assert q.addressable_shards[0].data.shape == (q.shape[0], q.shape[1] // 4, q.shape[2] // 2, q.shape[3])
    _, reference = load_hf(hf_dirs[(False, "legacy")], progress=False)
    for a, b in zip(__import__("jax").tree_util.tree_leaves(params), __import__("jax").tree_util.tree_leaves(reference), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
