"""LoRA adapters between vtjax and PEFT: export as a PEFT directory or merged, import a PyTorch-trained one.

The reference is transformers + peft 0.15.2 themselves: ``PeftModel.from_pretrained`` on the tiny
transformers Qwen2.5-VL, and an adapter made with ``get_peft_model`` in PyTorch.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import Qwen2_5_VLForConditionalGeneration

from tests.convert.test_convert import TINY, run_cli
from tests.models.test_lora import trained
from tests.parity.hf_reference import build_hf_model
from vtjax.convert.orbax_io import read_checkpoint_config, restore_params, write_params_checkpoint
from vtjax.convert.verify import random_multimodal_inputs
from vtjax.models.qwen2_5_vl import forward, init_params
from vtjax.models.qwen2_5_vl import lora

SPEC = lora.LoraSpec(rank=4, alpha=8.0, targets=lora.DECODER_PROJECTIONS + r"|^visual/layers/qkv$|^visual/merger/fc1$")
INPUTS = random_multimodal_inputs(TINY, seed=3)


def torch_logits(model) -> np.ndarray:
    with torch.no_grad():
        return model(**{k: torch.as_tensor(v) for k, v in INPUTS.items()}).logits.numpy()


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    """A tiny random transformers checkpoint and the vtjax checkpoint converted from it."""
    root = tmp_path_factory.mktemp("lora")
    build_hf_model(TINY, seed=2).save_pretrained(root / "hf")
    assert run_cli("hf-to-orbax", "--hf-dir", root / "hf", "--out", root / "base") == 0
    return root


@pytest.fixture(scope="module")
def adapted_ckpt(base_dir):
    """The base params with trained (random, B non-zero) adapters, as a vtjax checkpoint."""
    config = TINY.replace(lora=SPEC)
    fresh = init_params(config, 0)
    base = restore_params(base_dir / "base")
    params = trained(jax.tree_util.tree_map_with_path(
        lambda p, x: x if lora.is_adapter(p) else np.asarray(_leaf(base, p)), fresh), scale=0.1)
    (base_dir / "adapted").mkdir()
    write_params_checkpoint(base_dir / "adapted", config, params)
    ours = np.asarray(forward(config, params, **INPUTS))
    assert np.abs(ours - np.asarray(forward(TINY, params, **INPUTS))).max() > 1e-2  # the adapters matter
    return base_dir / "adapted", ours


def _leaf(tree, key_path):
    for k in key_path:
        tree = tree[k.key]
    return tree


def test_checkpoint_records_its_adapters(adapted_ckpt):
    assert read_checkpoint_config(adapted_ckpt[0]).lora == SPEC


def test_peft_export_loads_onto_the_transformers_model_with_our_logits(base_dir, adapted_ckpt, tmp_path):
    ckpt, ours = adapted_ckpt
    assert run_cli("orbax-to-hf", "--ckpt", ckpt, "--lora", "peft", "--base-model", "tiny-base",
                   "--out", tmp_path / "adapter", "--verify") == 0
    written = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert written["r"] == 4 and written["lora_alpha"] == 8.0 and written["base_model_name_or_path"] == "tiny-base"
    base = Qwen2_5_VLForConditionalGeneration.from_pretrained(base_dir / "hf", torch_dtype=torch.float32).eval()
    model = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    adapted_modules = {n for n, _ in model.named_modules() if n.endswith("lora_A")}
    assert len(adapted_modules) == 7 * TINY.text.num_hidden_layers + TINY.vision.depth + 1
    np.testing.assert_allclose(torch_logits(model)[0], ours[0], atol=1e-4)


def test_merged_export_loads_with_from_pretrained_and_our_logits(adapted_ckpt, tmp_path):
    ckpt, ours = adapted_ckpt
    assert run_cli("orbax-to-hf", "--ckpt", ckpt, "--lora", "merge", "--out", tmp_path / "merged") == 0
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp_path / "merged", torch_dtype=torch.float32)
    np.testing.assert_allclose(torch_logits(model.eval())[0], ours[0], atol=1e-4)


def test_adapter_trained_in_pytorch_imports_with_its_logits(base_dir, tmp_path):
    torch.manual_seed(0)
    base = Qwen2_5_VLForConditionalGeneration.from_pretrained(base_dir / "hf", torch_dtype=torch.float32).eval()
    peft_config = LoraConfig(r=8, lora_alpha=4, use_rslora=True,
                             target_modules=["q_proj", "v_proj", "down_proj", "attn.proj"])
    model = get_peft_model(base, peft_config)
    with torch.no_grad():  # as if trained: B away from zero
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.05 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "torch_adapter")
    expected = torch_logits(model.eval())
    assert run_cli("hf-to-orbax", "--hf-dir", base_dir / "hf", "--peft-adapter", tmp_path / "torch_adapter",
                   "--out", tmp_path / "imported", "--verify") == 0
    config = read_checkpoint_config(tmp_path / "imported")
    assert config.lora.rank == 8 and config.lora.rslora and config.lora.scale == 4 / np.sqrt(8)
    assert config.lora.selects("visual/layers/mlp/down_proj") and config.lora.selects("layers/v_proj")
    assert not config.lora.selects("layers/k_proj")
    ours = np.asarray(forward(config, restore_params(tmp_path / "imported"), **INPUTS))
    np.testing.assert_allclose(ours[0], expected[0], atol=1e-4)


def test_lora_flag_must_match_the_checkpoint(base_dir, adapted_ckpt, tmp_path, capsys):
    assert run_cli("orbax-to-hf", "--ckpt", adapted_ckpt[0], "--out", tmp_path / "x") == 2
    assert "holds LoRA adapters (r=4): pass --lora merge" in capsys.readouterr().err
    assert run_cli("orbax-to-hf", "--ckpt", base_dir / "base", "--lora", "peft", "--out", tmp_path / "y") == 2
    assert "holds no LoRA adapters" in capsys.readouterr().err


def test_unsupported_peft_features_are_refused(base_dir, tmp_path, capsys):
    base = Qwen2_5_VLForConditionalGeneration.from_pretrained(base_dir / "hf", torch_dtype=torch.float32)
    get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"], use_dora=True)).save_pretrained(tmp_path / "dora")
    assert run_cli("hf-to-orbax", "--hf-dir", base_dir / "hf", "--peft-adapter", tmp_path / "dora",
                   "--out", tmp_path / "out") == 2
    assert "use_dora=True is not supported" in capsys.readouterr().err
