"""SFT: the next-token loss on the answer tokens, as an objective of the shared loop (``loop``).

Each step the batch builder pads this process's rows to the sizes every
process agreed on, assembles the global batch and runs the jitted step (one
compile per batch shape bucket). Resume, stopping, checkpoints and logs are
the loop's.
"""

from __future__ import annotations

import time

import jax
import numpy as np

from vtjax.train import config as config_lib
from vtjax.train import loop
from vtjax.train.batch import BatchBuilder
from vtjax.train.compile_log import CompileLog
from vtjax.train.data import train_data
from vtjax.train.flops import peak_tflops, train_step_flops
from vtjax.train.loop import RunResult
from vtjax.train.step import jit_train_step, make_train_step


class SftObjective:
    """One SFT optimizer step per data batch."""

    name = "sft"
    size_count = 3  # text length, patches per micro-batch, frame bucket

    def __init__(self, run: loop.Run):
        t = run.config.train
        self.run = run
        self.builder = BatchBuilder(run.model_cfg, run.mesh, t.micro_batches,
                                    patch_buckets=tuple(run.config.data.patch_buckets) or None,
                                    loss_weighting=t.loss_weighting)
        self.step_fn = make_train_step(run.model_cfg, run.tx, run.schedule, t, run.mesh, seed=run.config.seed)
        self.compiled: dict = {}  # batch tree structure (static frame bucket) -> jitted step
        self.compile_log = CompileLog("train step")
        self.peak = run.config.log.peak_tflops or peak_tflops(jax.devices()[0].device_kind)
        self.vision_frozen = "vision" in config_lib.split_list(t.freeze)

    def local_sizes(self, raw: dict) -> np.ndarray:
        return self.builder.local_sizes(raw)

    def step(self, state, raw: dict, sizes: np.ndarray, step: int):
        del step
        batch = self.builder.to_global(self.builder.host_batch(raw, sizes))
        key = jax.tree_util.tree_structure(batch)
        if key not in self.compiled:
            self.compiled[key] = jit_train_step(self.step_fn, self.run.shardings, self.builder.shardings(batch),
                                                self.run.mesh)
        self.compile_log.before(batch)
        start = time.perf_counter()
        state, metrics = self.compiled[key](state, batch)
        metrics = jax.device_get(metrics)
        seconds = time.perf_counter() - start
        self.compile_log.after()
        return state, metrics, self._scalars(metrics, seconds, raw)

    def _scalars(self, metrics, seconds, raw) -> dict:
        out = {k: float(metrics[k]) for k in ("loss", "grad_norm", "lr", "tokens", "target_tokens")}
        out["step_time_s"] = seconds
        out["tokens_per_s"] = out["tokens"] / max(seconds, 1e-9)
        if self.peak:
            flops = train_step_flops(self.run.model_cfg, raw, vision_frozen=self.vision_frozen)
            out["mfu"] = flops / (seconds * jax.local_device_count() * self.peak * 1e12)
        return out


def sft_data(config, model_cfg, mesh) -> loop.TrainData:
    iterator, model_cfg, per_epoch = train_data(config, model_cfg, mesh)
    return loop.TrainData(iterator=iterator, model_cfg=model_cfg, examples_per_epoch=per_epoch)


def run(config, workdir: str) -> RunResult:
    """Trains ``config`` (an SFT ConfigDict) with checkpoints and logs under ``workdir``."""
    sizes = config_lib.validate(config, num_devices=jax.device_count(), process_count=jax.process_count())
    setup = loop.setup(config, workdir, mesh_sizes=sizes, defaults=config_lib.sft_defaults().to_dict(),
                       load_data=sft_data)
    return loop.train(setup, SftObjective(setup))
