"""configs/tiny_sft.py:records works out of the box on the project's own synthetic records."""

import os
import runpy

import jax
import numpy as np
from jax.sharding import Mesh

from vtjax.data import synthetic
from vtjax.train import data as train_data
from vtjax.train import state as state_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_tiny_records_config_keeps_every_synthetic_record(tmp_path):
    ds = synthetic.write_dataset(os.fspath(tmp_path), synthetic.SyntheticConfig(num_train=48, num_test=2))
    config = runpy.run_path(os.path.join(REPO, "configs", "tiny_sft.py"))["get_config"]("records")
    config.data.train_files = ds.train_path
    config.data.video_roots = ds.video_root
    config.data.tokenizer = ds.tokenizer_path
    mesh = Mesh(np.array(jax.devices()[:1]).reshape(1, 1, 1), ("data", "fsdp", "tensor"))
    it, _, num_records = train_data.train_data(config, state_lib.model_config(config), mesh)
    assert num_records == 48
    batches = [next(it) for _ in range(48 // config.train.batch_size)]  # one epoch
    assert it.stats["seen"] == 48 and it.stats["skipped"] == 0, it.stats["recent_skips"]
    lengths = [int(m.sum()) for b in batches for m in b["attention_mask"]]
    assert max(lengths) > 512  # the records the old max_length=512 dropped are in
    assert all(b["example_mask"].all() for b in batches)
