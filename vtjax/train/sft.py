"""The SFT loop: config -> mesh -> data -> state (fresh or resumed) -> jitted steps -> checkpoints.

Every process runs this with the same config. Each step, the processes agree
(one small host all-gather) on the batch's padded sizes and on whether any of
them must stop (SIGTERM, or its data ran out); stopping saves a checkpoint of
the last completed step first, so a preempted run resumes exactly. Ctrl-C
stops the same way (twice: at once); see ``signals``. Resuming checks the
saved config and skips damaged checkpoints (``resume``).
"""

from __future__ import annotations

import dataclasses
import logging
import time

import jax
import numpy as np

from vtjax import errors
from vtjax.train import config as config_lib
from vtjax.train.batch import BatchBuilder
from vtjax.train import resume
from vtjax.train.checkpoint import Checkpointer
from vtjax.train.compile_log import CompileLog
from vtjax.train.data import train_data
from vtjax.train.flops import peak_tflops, train_step_flops
from vtjax.train.metrics import MetricsLogger
from vtjax.train.optimizer import lr_schedule, make_optimizer, warmup_steps_for
from vtjax.train.sharding import make_mesh
from vtjax.train.signals import StopFlag
from vtjax.train.state import (abstract_state, init_state, model_config, param_shapes,
                               state_shardings, with_shardings)
from vtjax.train.step import jit_train_step, make_train_step

log = logging.getLogger("vtjax.train")
_EXHAUSTED, _PREEMPTED = 1, 2  # stop codes agreed between processes (the larger wins)


class NonFiniteLossError(errors.TrainingError, FloatingPointError):
    """The loss or gradient norm was NaN/inf and ``train.on_nonfinite`` is "stop"."""


@dataclasses.dataclass
class RunResult:
    step: int  # optimizer steps completed
    status: str  # "done" | "preempted" | "data_exhausted"
    last_metrics: dict  # host scalars of the last step
    skipped_updates: int  # steps whose update was dropped (non-finite, on_nonfinite="skip")


def num_train_steps(config, examples_per_epoch: int) -> int:
    t = config.train
    steps = t.num_steps or (t.num_epochs * examples_per_epoch) // t.batch_size
    if steps <= 0:
        raise config_lib.ConfigError(
            f"train.num_epochs={t.num_epochs} over {examples_per_epoch} examples gives no full batch of "
            f"train.batch_size={t.batch_size}; set train.num_steps or use more data")
    return int(steps)


def run(config, workdir: str) -> RunResult:
    """Trains ``config`` (an SFT ConfigDict) with checkpoints and logs under ``workdir``."""
    sizes = config_lib.validate(config, num_devices=jax.device_count(), process_count=jax.process_count())
    config_dict = config.to_dict()
    ckpt = Checkpointer(workdir, every_steps=config.checkpoint.every_steps, keep=config.checkpoint.keep,
                        async_save=config.checkpoint.async_save)
    resume_from = resume.check_workdir(ckpt, config_dict, resume=config.checkpoint.resume,
                                       defaults=config_lib.sft_defaults().to_dict())
    mesh = make_mesh(sizes["data"], sizes["fsdp"], sizes["tensor"])
    model_cfg = model_config(config)
    iterator, model_cfg, per_epoch = train_data(config, model_cfg, mesh)
    total_steps = num_train_steps(config, per_epoch)
    t = config.train

    tx = make_optimizer(t, param_shapes(model_cfg), total_steps)
    shapes = abstract_state(model_cfg, tx)
    shardings = state_shardings(model_cfg, tx, mesh, shapes)
    schedule = lr_schedule(t.lr, total_steps, warmup_steps_for(t, total_steps), t.end_lr_ratio)

    latest = None
    if resume_from is not None:
        latest, state, data_state = resume.restore_newest(ckpt, with_shardings(shapes, shardings))
        iterator.set_state(data_state)
        log.info("resumed from %s/%d", ckpt.directory, latest)
    else:
        state = init_state(model_cfg, tx, mesh, seed=config.seed, init_from=config.model.init_from)
    step = int(jax.device_get(state.step))

    builder = BatchBuilder(model_cfg, mesh, t.micro_batches)
    step_fn = make_train_step(model_cfg, tx, schedule, t, mesh)
    compiled: dict = {}  # batch tree structure (static frame bucket) -> jitted step
    compile_log = CompileLog("train step")
    logger = MetricsLogger(workdir, every_steps=config.log.every_steps, total_steps=total_steps,
                           start_step=step, progress_bar=config.log.progress_bar)
    peak = config.log.peak_tflops or peak_tflops(jax.devices()[0].device_kind)
    saved_step, status, scalars, skipped = latest, "done", {}, 0
    vision_frozen = "vision" in config_lib.split_list(t.freeze)

    data_state = iterator.get_state()  # where the data of the next step starts (saved with the state)
    data_skipped = _data_skipped(iterator)
    try:
        with StopFlag() as stop_flag:
            while step < total_steps:
                raw = next(iterator, None)
                local = builder.local_sizes(raw) if raw is not None else np.zeros(3, np.int64)
                code = _PREEMPTED if stop_flag.requested else (_EXHAUSTED if raw is None else 0)
                sizes_agreed, code = builder.agreed_sizes(local, code)
                if code:
                    status = "preempted" if code == _PREEMPTED else "data_exhausted"
                    break
                batch = builder.to_global(builder.host_batch(raw, sizes_agreed))
                key = jax.tree_util.tree_structure(batch)
                if key not in compiled:
                    compiled[key] = jit_train_step(step_fn, shardings, builder.shardings(batch), mesh)
                compile_log.before(batch)
                start = time.perf_counter()
                state, metrics = compiled[key](state, batch)
                metrics = jax.device_get(metrics)
                seconds = time.perf_counter() - start
                compile_log.after()
                data_state = iterator.get_state()
                step += 1
                if not metrics["finite"]:
                    if t.on_nonfinite == "stop":
                        ckpt.wait()
                        raise NonFiniteLossError(
                            f"step {step}: loss={metrics['loss']} grad_norm={metrics['grad_norm']}; the update "
                            f"was not applied and no checkpoint was written after step {saved_step}. Set "
                            "train.on_nonfinite='skip' to drop such updates and continue")
                    skipped += 1
                    log.warning("step %d: non-finite loss/grad norm, update skipped (%d so far)", step, skipped)
                scalars = _scalars(metrics, seconds, model_cfg, raw, peak, vision_frozen)
                scalars["data_skipped"] = _data_skipped(iterator) - data_skipped  # this step's count
                scalars["updates_skipped"] = float(not metrics["finite"])
                data_skipped += scalars["data_skipped"]
                logger.step(step, scalars)
                if ckpt.save(step, state, data_state, config_dict):
                    saved_step = step
            if saved_step != step:  # data_state: before any batch fetched but not trained on
                ckpt.save(step, state, data_state, config_dict, force=True)
    finally:
        ckpt.close()
        logger.flush(step)
        logger.close()
    return RunResult(step=step, status=status, last_metrics=scalars, skipped_updates=skipped)


def _data_skipped(iterator) -> float:
    """Examples the data pipeline skipped so far (unreadable videos, too long, ...)."""
    return float(getattr(iterator, "stats", {}).get("skipped", 0))


def _scalars(metrics, seconds, model_cfg, raw, peak, vision_frozen) -> dict:
    out = {k: float(metrics[k]) for k in ("loss", "grad_norm", "lr", "tokens", "target_tokens")}
    out["step_time_s"] = seconds
    out["tokens_per_s"] = out["tokens"] / max(seconds, 1e-9)
    if peak:
        flops = train_step_flops(model_cfg, raw, vision_frozen=vision_frozen)
        out["mfu"] = flops / (seconds * jax.local_device_count() * peak * 1e12)
    return out
