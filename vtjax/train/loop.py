"""The one training loop SFT and GRPO share: setup, resume, stopping, the non-finite policy, checkpoints, logs.

  setup(config, workdir, ...)  validate -> workdir check -> mesh -> data -> optimizer -> state (fresh or
                               resumed, data position restored) = a `Run`
  train(run, objective)        steps until done, data runs out or a stop is requested; returns `RunResult`

An `Objective` (SFT's next-token loss, GRPO's rollouts + policy loss) turns
one data batch into one optimizer step; everything around the step lives
here. Every process runs the loop with the same config. Before each step the
processes agree, in one small host all-gather, on the padded sizes the
objective needs and on whether any of them must stop (SIGTERM / Ctrl-C on
any host, or its data ran out), so all stop after the same step. The data
position saved with a step is the one right after that step's batch: a stop
requested between saves never records a batch that was fetched but not
trained on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import Any, Protocol

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from vtjax import errors
from vtjax.models.qwen2_5_vl import Qwen25VLConfig
from vtjax.models.qwen2_5_vl import lora
from vtjax.train import adapters, resume
from vtjax.train.checkpoint import Checkpointer
from vtjax.train.metrics import MetricsLogger
from vtjax.train.processes import agree
from vtjax.train.optimizer import lr_schedule, make_optimizer, warmup_steps_for
from vtjax.sharding import make_mesh
from vtjax.train.signals import StopFlag
from vtjax.train.state import (TrainState, abstract_state, init_state, initial_params, model_config, param_shapes,
                               state_shardings, with_shardings)

log = logging.getLogger("vtjax.train")


class StopCode:
    """Stop codes agreed between processes; the largest wins."""

    GO_ON = 0
    EXHAUSTED = 1  # this process's data ran out
    PREEMPTED = 2  # SIGTERM / Ctrl-C


class NonFiniteLossError(errors.TrainingError, FloatingPointError):
    """The loss or gradient norm was NaN/inf and ``train.on_nonfinite`` is "stop"."""


@dataclasses.dataclass
class RunResult:
    step: int  # optimizer steps completed
    status: str  # "done" | "preempted" | "data_exhausted"
    last_metrics: dict  # host scalars of the last step
    skipped_updates: int  # steps whose update was dropped (non-finite, on_nonfinite="skip")


@dataclasses.dataclass
class TrainData:
    """An objective's data for this process."""

    iterator: Any  # batches of this process's share, with get_state / set_state (and `stats`)
    model_cfg: Qwen25VLConfig  # the model config the data implies (tokenizer ids adopted on a random init)
    examples_per_epoch: int  # sets the step count when train.num_steps is 0
    tokenizer: Any = None  # decodes completions (GRPO)


@dataclasses.dataclass
class Run:
    """Everything set up before the first step; the objective builds its programs from it."""

    config: ml_collections.ConfigDict
    config_dict: dict  # saved with every checkpoint
    ckpt: Checkpointer
    mesh: Mesh
    data: TrainData
    total_steps: int
    tx: Any  # the optax optimizer
    schedule: Callable  # step -> learning rate
    shardings: TrainState  # NamedSharding of every state leaf
    state: TrainState  # fresh or resumed, placed on the mesh
    resumed_step: int | None  # the checkpoint step resumed from; None for a fresh run
    lora_base: dict | None = None  # LoRA: the base the adapters belong to (saved with every checkpoint)

    @property
    def model_cfg(self) -> Qwen25VLConfig:
        return self.data.model_cfg

    @property
    def model_json(self) -> dict:
        """The resolved model as a Hub config.json, saved with every checkpoint."""
        return self.model_cfg.to_hf_dict()


class Objective(Protocol):
    """One optimizer step's work on one data batch."""

    name: str  # the progress bar's label
    size_count: int  # length of local_sizes' result (a process whose data ran out agrees with zeros)

    def local_sizes(self, raw: dict) -> np.ndarray:
        """int64 [k] padded sizes this process's batch needs; the step gets the max over processes."""

    def step(self, state: TrainState, raw: dict, sizes: np.ndarray, step: int) -> tuple[TrainState, dict, dict]:
        """(new state, host metrics with "finite", "loss", "grad_norm", scalars to log) for global step ``step``."""


def num_train_steps(config, examples_per_epoch: int) -> int:
    t = config.train
    steps = t.num_steps or (t.num_epochs * examples_per_epoch) // t.batch_size
    if steps <= 0:
        raise errors.ConfigError(
            f"train.num_epochs={t.num_epochs} over {examples_per_epoch} examples gives no full batch of "
            f"train.batch_size={t.batch_size}; set train.num_steps or use more data")
    return int(steps)


def setup(config, workdir: str, *, mesh_sizes: dict, defaults: dict,
          load_data: Callable[[Any, Qwen25VLConfig, Mesh], TrainData], updates_per_step: int = 1) -> Run:
    """Checks the workdir against the saved config, builds the mesh, data, optimizer and state.

    Args:
      mesh_sizes: {"data", "fsdp", "tensor"} from the mode's validation.
      defaults: the mode's default config as a dict (resume reports changes against it).
      load_data: (config, model config, mesh) -> this process's TrainData.
      updates_per_step: optimizer updates per training step (GRPO's rl.num_iterations).
    """
    if jax.config.jax_compilation_cache_dir:
        log.info("compilation cache: %s (shared only by runs with the same XLA flags, versions and devices)",
                 jax.config.jax_compilation_cache_dir)
    config_dict = config.to_dict()
    ckpt = Checkpointer(workdir, every_steps=config.checkpoint.every_steps, keep=config.checkpoint.keep,
                        async_save=config.checkpoint.async_save)
    resume_from = resume.check_workdir(ckpt, config_dict, resume=config.checkpoint.resume, defaults=defaults)
    mesh = make_mesh(mesh_sizes["data"], mesh_sizes["fsdp"], mesh_sizes["tensor"])
    data = load_data(config, model_config(config), mesh)
    total_steps = num_train_steps(config, data.examples_per_epoch)
    t = config.train
    tx = make_optimizer(t, param_shapes(data.model_cfg), total_steps, updates_per_step)
    shapes = abstract_state(data.model_cfg, tx)
    shardings = state_shardings(data.model_cfg, tx, mesh, shapes)
    schedule = lr_schedule(t.lr, total_steps, warmup_steps_for(t, total_steps), t.end_lr_ratio)
    resumed_step, lora_base = None, None
    if resume_from is not None:
        target = adapters.checkpointed(with_shardings(shapes, shardings))
        resumed_step, state, data_state = resume.restore_newest(ckpt, target)
        resume.check_model_config(ckpt.read_model_config(resumed_step), data.model_cfg.to_hf_dict(), resumed_step)
        if data.model_cfg.lora is not None:  # the checkpoint holds the adapters: the base comes from its pointer
            base = initial_params(data.model_cfg, shardings.params, mesh, seed=config.seed,
                                  init_from=config.model.init_from)
            lora_base = adapters.base_record(base, config.model.init_from, config.seed)
            adapters.check_base(ckpt.read_lora_base(resumed_step), lora_base, resumed_step)
            state = state.replace(params=lora.insert(base, state.params))
        data.iterator.set_state(data_state)
        log.info("resumed from %s/%d", ckpt.directory, resumed_step)
    else:
        state = init_state(data.model_cfg, tx, mesh, seed=config.seed, init_from=config.model.init_from)
        if data.model_cfg.lora is not None:
            lora_base = adapters.base_record(state.params, config.model.init_from, config.seed)
    return Run(config=config, config_dict=config_dict, ckpt=ckpt, mesh=mesh, data=data, total_steps=total_steps,
               tx=tx, schedule=schedule, shardings=shardings, state=state, resumed_step=resumed_step,
               lora_base=lora_base)


def train(run: Run, objective: Objective) -> RunResult:
    """Runs ``objective`` from ``run.state`` to ``run.total_steps`` (or a stop), checkpointing and logging."""
    config, ckpt, iterator = run.config, run.ckpt, run.data.iterator
    state = run.state
    step = first_step = int(jax.device_get(state.step))
    logger = MetricsLogger(ckpt.workdir, every_steps=config.log.every_steps, total_steps=run.total_steps,
                           start_step=step, progress_bar=config.log.progress_bar, name=objective.name)
    saved_step, status, scalars, skipped = run.resumed_step, "done", {}, 0
    data_state = iterator.get_state()  # where the data of the next step starts (saved with the state)
    data_skipped = _data_skipped(iterator)
    try:
        with StopFlag() as stop_flag:
            while step < run.total_steps:
                raw = next(iterator, None)
                local = objective.local_sizes(raw) if raw is not None else np.zeros(objective.size_count, np.int64)
                code = (StopCode.PREEMPTED if stop_flag.requested
                        else StopCode.EXHAUSTED if raw is None else StopCode.GO_ON)
                sizes, code = agree(local, code)
                if code:
                    status = "preempted" if code == StopCode.PREEMPTED else "data_exhausted"
                    break
                with steady_state_guard(step > first_step):
                    state, metrics, scalars = objective.step(state, raw, sizes, step)
                data_state = iterator.get_state()
                step += 1
                if not metrics["finite"]:
                    if config.train.on_nonfinite == "stop":
                        ckpt.wait()
                        raise NonFiniteLossError(
                            f"step {step}: loss={metrics['loss']} grad_norm={metrics['grad_norm']}; the update "
                            f"was not applied and no checkpoint was written after step {saved_step}. Set "
                            "train.on_nonfinite='skip' to drop such updates and continue")
                    skipped += 1
                    log.warning("step %d: non-finite loss/grad norm, update skipped (%d so far)", step, skipped)
                scalars["data_skipped"] = _data_skipped(iterator) - data_skipped  # this step's count
                scalars["updates_skipped"] = float(not metrics["finite"])
                data_skipped += scalars["data_skipped"]
                logger.step(step, scalars)
                if ckpt.save(step, adapters.checkpointed(state), data_state, run.config_dict, run.model_json,
                             lora_base=run.lora_base):
                    saved_step = step
            if saved_step != step:  # data_state: before any batch fetched but not trained on
                ckpt.save(step, adapters.checkpointed(state), data_state, run.config_dict, run.model_json,
                          lora_base=run.lora_base, force=True)
    finally:
        ckpt.close()
        logger.flush(step)
        logger.close()
    return RunResult(step=step, status=status, last_metrics=scalars, skipped_updates=skipped)


def steady_state_guard(on: bool):
    """``jax.transfer_guard("disallow")`` after the first step: a host <-> device copy that is not
    explicit (``device_put``, ``make_array_from_*``, ``device_get``) raises instead of silently slowing
    every step. The first step is left free: compiling places constants as it likes."""
    return jax.transfer_guard("disallow") if on else contextlib.nullcontext()


def _data_skipped(iterator) -> float:
    """Examples the data pipeline skipped so far (unreadable videos, too long, ...)."""
    return float(getattr(iterator, "stats", {}).get("skipped", 0))
