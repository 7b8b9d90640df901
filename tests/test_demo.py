"""The demo pipeline end to end at smoke sizes (configs/demo.py:smoke), plus its config and report helpers."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys

import numpy as np
import pytest

from vtjax.demo import report, stages

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "configs", "demo.py")
# Fast CPU compiles (the trainer tests use the same flags) and one device, as `make demo` runs.
FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def demo_config(arg: str = ""):
    return runpy.run_path(DEMO)["get_config"](arg)


def test_demo_smoke_through_main(tmp_path, tmp_path_factory):
    from tests.test_colabs import shared_compile_cache  # notebook 02 compiles the same programs

    env = dict(os.environ, XLA_FLAGS=FAST_COMPILE_FLAGS, JAX_PLATFORMS="cpu",
               JAX_COMPILATION_CACHE_DIR=shared_compile_cache(tmp_path_factory),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    proc = subprocess.run([sys.executable, "-m", "vtjax.main", f"--config={DEMO}:smoke", f"--workdir={tmp_path}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "| chance (1 / options) | 25.00 |" in proc.stdout
    assert "| after SFT |" in proc.stdout and "| after SFT + GRPO |" in proc.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["chance"] == pytest.approx(25.0)
    for stage in ("after SFT", "after SFT + GRPO"):
        m = results["evals"][stage]
        assert m["count"] == 4 and 0.0 <= m["accuracy"] <= 100.0 and "mIoU" in m["grounding"]
    # Each stage left its artefacts: checkpoints, TensorBoard events, exported params, predictions.
    for run in ("sft", "grpo"):
        assert (tmp_path / run / "checkpoints").is_dir()
        assert list((tmp_path / run / "tb").glob("events.out.tfevents.*"))
    for params in ("init", "sft_params", "grpo_params"):
        assert (tmp_path / params / "vtjax.json").is_file() and (tmp_path / params / "tokenizer.model").is_file()
    for ev in ("eval_sft", "eval_grpo"):
        assert len((tmp_path / ev / "predictions.jsonl").read_text().splitlines()) == 4
    text = (tmp_path / "report.md").read_text()
    assert "| model | test accuracy % |" in text and "curves.png" in text
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_architecture_is_a_valid_qwen25vl_with_the_tokenizer_ids(tmp_path):
    from vtjax.data import synthetic
    from vtjax.data import tokenizer as tok_lib

    ds = synthetic.write_dataset(os.fspath(tmp_path), synthetic.SyntheticConfig(num_train=2, num_test=1, size=56),
                                 extra_texts=["x"])
    tok = tok_lib.load_tokenizer(ds.tokenizer_path)
    cfg = stages.architecture(demo_config(), tok)
    assert cfg.text.hidden_size == 128 and cfg.text.head_dim == 16  # 8 heads
    # mRoPE splits head_dim / 2 = 8 frequencies as 1/4 temporal, then the rest halved: (2, 3, 3)
    assert sum(cfg.text.mrope_section) == cfg.text.head_dim // 2 and cfg.text.mrope_section == (2, 3, 3)
    assert cfg.text.vocab_size % 64 == 0 and cfg.text.vocab_size >= tok.vocab_size
    assert cfg.video_token_id == tok.token_to_id("<|video_pad|>") and cfg.eos_token_id == tok.token_to_id("<|im_end|>")
    assert cfg.vision.out_hidden_size == cfg.text.hidden_size


def test_dataset_refuses_videos_shorter_than_the_frames(tmp_path):
    c = demo_config("smoke")
    with c.unlocked():
        c.video.nframes = 64
    with pytest.raises(ValueError, match="video.nframes"):
        stages.dataset(c, os.fspath(tmp_path))


def test_report_rows_and_reward_change():
    evals = {"after SFT": {"accuracy": 60.0, "format_rate": 90.0, "answered_rate": 100.0,
                           "grounding": {"mIoU": 40.0, "R@0.5": 35.0}}}
    rows = report.results_rows(25.0, evals)
    assert rows[0][:2] == ["chance (1 / options)", 25.0] and np.isnan(rows[0][2])
    assert rows[1] == ["after SFT", 60.0, 90.0, 100.0, 40.0, 35.0]
    log = [{"step": i, "reward_mean": r} for i, r in enumerate([0.2, 0.4, 0.6, 0.8, 1.0, 1.2])]
    assert report.reward_change(log) == pytest.approx((0.3, 1.1))
    assert all(np.isnan(report.reward_change([])))


def test_stage_configs_carry_the_demo_knobs():
    from types import SimpleNamespace

    demo = demo_config()
    with demo.unlocked():
        demo.sft.b2, demo.grpo.lr = 0.9, 1e-5  # values no default has, so a dropped field shows
    ds = SimpleNamespace(train_path="/d/train.jsonl", video_root="/d/videos")
    sft = stages.sft_config(demo, ds, ("sys", "{question}"), "/init")
    assert (sft.train.b2, sft.train.lr, sft.train.batch_size, sft.train.num_epochs) == (
        0.9, demo.sft.lr, demo.sft.batch_size, demo.sft.num_epochs)
    assert sft.train.freeze == "vision" and sft.model.init_from == "/init"
    assert sft.data.nframes == demo.video.nframes and sft.data.max_pixels == demo.video.size ** 2
    grpo = stages.grpo_config(demo, ds, ("sys", "{question}"), "/sft_params")
    assert (grpo.train.lr, grpo.rl.group_size, grpo.rl.beta) == (1e-5, demo.grpo.group_size, demo.grpo.beta)
