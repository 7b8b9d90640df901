"""Random in-memory SFT batches in the data pipeline's layout (``data.source = "synthetic"``).

For smoke runs, benchmarks and trainer tests that need no video files: a
fixed set of examples (random prompt tokens, one video of random patch rows,
random answer tokens) repeated in a fixed order. Global batch ``s`` holds
examples ``s*B .. s*B+B-1`` (mod the set size); a process loading share ``i``
of ``n`` gets rows ``i*B/n ..`` of it, so any process count sees the same
global batches. The iterator's state is the next batch index.
"""

from __future__ import annotations

import numpy as np

from vtjax.data import batching
from vtjax.models.qwen2_5_vl import Qwen25VLConfig


def synthetic_example(config: Qwen25VLConfig, index: int, *, seed: int, text: int,
                      grid: tuple[int, int, int]) -> dict:
    """One example: ``text`` random tokens split around a video of ``grid`` patches, answer = second half."""
    rng = np.random.default_rng([seed, index])
    t, h, w = grid
    vision_tokens = t * h * w // config.vision.merge_unit
    top = min(config.vision_start_token_id, config.video_token_id, config.vision_end_token_id,
              config.image_token_id, config.text.vocab_size)
    words = rng.integers(0, top, size=text).astype(np.int32)
    prompt, answer = words[: text // 2], words[text // 2:]
    ids = np.concatenate([prompt[:2], [config.vision_start_token_id],
                          np.full(vision_tokens, config.video_token_id), [config.vision_end_token_id],
                          prompt[2:], answer]).astype(np.int32)
    loss_mask = np.zeros(ids.shape, bool)
    loss_mask[-answer.size:] = True
    patches = rng.integers(0, 256, size=(t * h * w, config.vision.patch_dim), dtype=np.uint8)
    return {"input_ids": ids, "loss_mask": loss_mask, "patches": patches,
            "grid_thw": np.asarray(grid, np.int64), "second_per_grid_t": 1.0}


def from_config(config, model_cfg: Qwen25VLConfig, shard: int, num_shards: int) -> "SyntheticIterator":
    """The ``data.synthetic_*`` iterator of a config, for data shard ``shard`` of ``num_shards``."""
    d = config.data
    return SyntheticIterator(model_cfg, global_batch=config.train.batch_size, shard=shard, num_shards=num_shards,
                             seed=config.seed, num_examples=d.synthetic_examples, text=d.synthetic_text,
                             grid=tuple(d.synthetic_grid))


class SyntheticIterator:
    """Endless batches of ``local_batch`` rows (this process's share ``shard`` of ``num_shards``)."""

    def __init__(self, config: Qwen25VLConfig, *, global_batch: int, shard: int, num_shards: int, seed: int,
                 num_examples: int, text: int, grid: tuple[int, int, int]):
        if global_batch % num_shards:
            raise ValueError(f"global batch {global_batch} is not divisible by {num_shards} data shards")
        self.local_batch = global_batch // num_shards
        self.global_batch, self.shard = global_batch, shard
        self.examples = [synthetic_example(config, i, seed=seed, text=text, grid=tuple(grid))
                         for i in range(num_examples)]
        self.pad_id = config.pad_token_id or 0
        self.next_batch = 0
        self.stats = {"seen": 0, "skipped": 0, "recent_skips": []}

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        start = self.next_batch * self.global_batch + self.shard * self.local_batch
        chosen = [self.examples[(start + j) % len(self.examples)] for j in range(self.local_batch)]
        self.next_batch += 1
        self.stats["seen"] += len(chosen)
        batch = batching.collate(chosen, pad_id=self.pad_id, with_labels=True)
        batch["example_mask"] = np.ones(len(chosen), bool)
        return batch

    def get_state(self) -> dict:
        return {"next_batch": self.next_batch, "seen": self.stats["seen"]}

    def set_state(self, state: dict):
        if "resharded_from" in state:  # saved by another number of processes: batches are global
            self.next_batch = min(int(s["next_batch"]) for s in state["resharded_from"])
            self.stats["seen"] = self.next_batch * self.local_batch
            return
        self.next_batch = int(state["next_batch"])
        self.stats["seen"] = int(state["seen"])
