"""A records file mixing image and video records trains: SFT steps and a GRPO step on the tiny configs."""

from __future__ import annotations

import json
import os
import runpy

import numpy as np
import pytest
from PIL import Image

from vtjax.data import image as image_lib
from vtjax.data import synthetic, video as video_lib
from vtjax.train import grpo, sft

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """(dataset, records file): the synthetic video records interleaved with as many image records."""
    root = tmp_path_factory.mktemp("mixed")
    ds = synthetic.write_dataset(os.fspath(root), synthetic.SyntheticConfig(num_train=8, num_test=2))
    with open(ds.train_path, encoding="utf-8") as f:
        videos = [json.loads(line) for line in f if line.strip()]
    os.makedirs(os.path.join(ds.video_root, "images"), exist_ok=True)
    rows = []
    for k, rec in enumerate(videos):
        path = f"images/i{k}.png"
        pixels = np.random.default_rng(k).integers(0, 256, (50 + 7 * k, 90 - 5 * k, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(ds.video_root, path))
        rows += [rec, {**rec, "data_type": "image", "path": f"./{path}", "problem_id": f"img-{k}"}]
    out = root / "mixed.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return ds, os.fspath(out)


def _configure(name: str, ds, train_file: str):
    config = runpy.run_path(os.path.join(REPO, "configs", name))["get_config"]("records")
    config.data.train_files = train_file
    config.data.video_roots = ds.video_root
    config.data.tokenizer = ds.tokenizer_path
    config.checkpoint.every_steps = 100
    return config


def _count_loads(monkeypatch) -> dict:
    """Counts the images and videos the pipeline reads (worker_count 0: in this process)."""
    seen = {"image": 0, "video": 0}

    def counting(fn, kind):
        def wrapped(*args, **kwargs):
            seen[kind] += 1
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(image_lib, "load_image", counting(image_lib.load_image, "image"))
    monkeypatch.setattr(video_lib, "load_video", counting(video_lib.load_video, "video"))
    return seen


def _run_and_check(trainer, config, workdir, monkeypatch, steps: int):
    """Runs ``trainer`` for ``steps`` steps; checks it finished and read both images and videos."""
    config.train.num_steps = steps
    seen = _count_loads(monkeypatch)
    result = trainer(config, os.fspath(workdir))
    assert result.step == steps and result.status == "done"
    assert np.isfinite(result.last_metrics["loss"])
    assert seen["image"] > 0 and seen["video"] > 0, seen
    assert result.last_metrics["data_skipped"] == 0


def test_sft_trains_on_images_and_videos(mixed, tmp_path, monkeypatch):
    _run_and_check(sft.run, _configure("tiny_sft.py", *mixed), tmp_path, monkeypatch, steps=3)


def test_grpo_steps_on_images_and_videos(mixed, tmp_path, monkeypatch):
    config = _configure("tiny_grpo.py", *mixed)
    config.train.batch_size = 4  # prompts: with this seed, images and videos in the one step
    config.train.micro_batches = 2
    config.rl.max_new_tokens = 8
    _run_and_check(grpo.run, config, tmp_path, monkeypatch, steps=1)
