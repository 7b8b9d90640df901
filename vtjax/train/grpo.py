"""The GRPO loop: prompts -> grouped rollouts -> rewards -> advantages -> num_iterations updates.

Each step samples ``rl.group_size`` completions for each of ``train.batch_size``
prompts with the compiled sampler (on the training mesh, from the current
params), scores them on the host with the configured reward functions,
normalises rewards within each group, and updates the policy with the GRPO
loss (k3 KL against the frozen starting policy). Checkpoints, resume
(config check, damaged steps skipped), SIGTERM / Ctrl-C and logging work as in SFT; the sampling seed derives from the
step, so a resumed run draws the same rollouts an uninterrupted one would.
"""

from __future__ import annotations

import logging
import time

import jax
import numpy as np

from vtjax.data import batching, pipeline
from vtjax.rl import bonuses as bonuses_lib
from vtjax.rl import grpo as grpo_lib
from vtjax.rl import rewards as rewards_lib
from vtjax.sampling import generate
from vtjax.train import grpo_config, resume
from vtjax.train.batch import data_shard
from vtjax.train.checkpoint import Checkpointer
from vtjax.train.compile_log import CompileLog
from vtjax.train.data import record_source
from vtjax.train.frame_shuffle import shuffle_videos
from vtjax.train.grpo_step import batch_logprobs_fn, make_grpo_step
from vtjax.train.metrics import MetricsLogger
from vtjax.train.optimizer import lr_schedule, make_optimizer, warmup_steps_for
from vtjax.train.rollout_batch import build_rollout_batch, place_rollout_batch
from vtjax.train.sft import NonFiniteLossError, RunResult, num_train_steps
from vtjax.train.sharding import make_mesh
from vtjax.train.signals import StopFlag
from vtjax.train.state import abstract_state, init_state, model_config, param_shapes, state_shardings, \
    with_shardings
from vtjax.train.synthetic import SyntheticIterator

log = logging.getLogger("vtjax.grpo")


class TokenIdText:
    """Stand-in tokenizer for synthetic prompts: a completion's text is its token ids."""

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        del skip_special_tokens
        return " ".join(str(int(i)) for i in ids)


class PromptIterator:
    """Synthetic GRPO prompts: the SFT synthetic examples cut before their answer."""

    def __init__(self, inner: SyntheticIterator):
        self.inner, self.stats = inner, inner.stats

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        batch = next(self.inner)
        keep = ~np.asarray(batch["loss_mask"], bool)  # prompt tokens (and padding)
        width = int(np.max(np.sum(keep & (batch["attention_mask"] > 0), axis=1)))
        batch["input_ids"] = np.asarray(batch["input_ids"])[:, :width]
        batch["attention_mask"] = (np.asarray(batch["attention_mask"]) * keep)[:, :width]
        batch["solution"] = [""] * len(batch["input_ids"])
        batch["problem_type"] = ["synthetic"] * len(batch["input_ids"])
        return batch

    def get_state(self) -> dict:
        return self.inner.get_state()

    def set_state(self, state: dict):
        self.inner.set_state(state)


def grpo_data(config, model_cfg, mesh):
    """(iterator of prompt batches, model config, tokenizer, prompts per epoch) for this process."""
    shard, num_shards = data_shard(mesh)
    d, t = config.data, config.train
    if d.source == "synthetic":
        inner = SyntheticIterator(model_cfg, global_batch=t.batch_size, shard=shard, num_shards=num_shards,
                                  seed=config.seed, num_examples=d.synthetic_examples, text=d.synthetic_text,
                                  grid=tuple(d.synthetic_grid))
        return PromptIterator(inner), model_cfg, TokenIdText(), d.synthetic_examples
    src = record_source(config, model_cfg, require_process=False)
    pipe_cfg = pipeline.PipelineConfig(batch_size=t.batch_size // num_shards, seed=config.seed, num_epochs=None,
                                       worker_count=d.worker_count, max_bad_fraction=d.max_bad_fraction)
    ds = pipeline.grpo_pipeline(src.records, src.tokenizer, src.prompts, pipe_cfg, video=src.video, image=src.image,
                                max_length=d.max_length, process_index=shard, process_count=num_shards)
    return iter(ds), src.model_cfg, src.tokenizer, len(src.records)


def completion_texts(tokenizer, tokens: np.ndarray, lengths: np.ndarray, stop_ids) -> list[str]:
    """Decoded completions without their EOS (tags and other special tokens kept for the rewards)."""
    stop = set(int(s) for s in stop_ids)
    return [tokenizer.decode([int(x) for x in row[:n] if int(x) not in stop]) for row, n in zip(tokens, lengths, strict=True)]


def run(config, workdir: str) -> RunResult:
    """Trains ``config`` (a GRPO ConfigDict) with checkpoints and logs under ``workdir``."""
    sizes = grpo_config.validate(config, num_devices=jax.device_count(), process_count=jax.process_count())
    weights = grpo_config.reward_weights(config)
    reward_options = grpo_config.reward_options(config)
    config_dict = config.to_dict()
    ckpt = Checkpointer(workdir, every_steps=config.checkpoint.every_steps, keep=config.checkpoint.keep,
                        async_save=config.checkpoint.async_save)
    resume_from = resume.check_workdir(ckpt, config_dict, resume=config.checkpoint.resume,
                                       defaults=grpo_config.grpo_defaults().to_dict())
    mesh = make_mesh(sizes["data"], sizes["fsdp"], sizes["tensor"])
    model_cfg = model_config(config)
    iterator, model_cfg, tokenizer, per_epoch = grpo_data(config, model_cfg, mesh)
    t, r = config.train, config.rl
    total_steps = num_train_steps(config, per_epoch)
    tx = make_optimizer(t, param_shapes(model_cfg), total_steps)
    shapes = abstract_state(model_cfg, tx)
    shardings = state_shardings(model_cfg, tx, mesh, shapes)
    schedule = lr_schedule(t.lr, total_steps, warmup_steps_for(t, total_steps), t.end_lr_ratio)

    start_state = init_state(model_cfg, tx, mesh, seed=config.seed, init_from=config.model.init_from)
    reference = start_state.params if r.beta > 0 else None  # the frozen starting policy
    latest = None
    if resume_from is not None:
        latest, state, data_state = resume.restore_newest(ckpt, with_shardings(shapes, shardings))
        iterator.set_state(data_state)
        log.info("resumed from %s/%d", ckpt.directory, latest)
    else:
        state = start_state if reference is None else jax.tree_util.tree_map(lambda x: x.copy(), start_state)
    del start_state
    step = first_step = int(jax.device_get(state.step))

    eos = tuple(int(e) for e in (model_cfg.eos_token_id,) if e is not None)
    stop_ids = eos + ((model_cfg.pad_token_id,) if model_cfg.pad_token_id is not None else ())
    batch_shards = sizes["data"] * sizes["fsdp"]
    logprobs_fn = batch_logprobs_fn(model_cfg, t.loss_chunk)
    update = jax.jit(make_grpo_step(model_cfg, tx, schedule, t, r), donate_argnums=0)
    logger = MetricsLogger(workdir, every_steps=config.log.every_steps, total_steps=total_steps,
                           start_step=step, progress_bar=config.log.progress_bar, name="grpo")
    compile_log = CompileLog("GRPO update step")
    saved_step, status, scalars, skipped = latest, "done", {}, 0
    try:
        with StopFlag() as stop_flag:
            while step < total_steps:
                if stop_flag.requested:
                    status = "preempted"
                    break
                raw = next(iterator, None)
                if raw is None:
                    status = "data_exhausted"
                    break
                hf, _ = batching.model_inputs(raw)
                if step == first_step:
                    log.info("sampling the first rollouts: compiling the sampler for prompt shapes %s",
                             {k: tuple(np.shape(v)) for k, v in hf.items() if k.startswith(("input", "pixel"))})
                start = time.perf_counter()
                rollout = generate(model_cfg, state.params, **hf, max_new_tokens=r.max_new_tokens,
                                   num_samples=r.group_size, temperature=r.temperature, top_p=r.top_p,
                                   top_k=r.top_k, eos_token_ids=eos, seed=config.seed * 1_000_003 + step)
                rollout_s = time.perf_counter() - start
                texts = completion_texts(tokenizer, rollout["tokens"], rollout["lengths"], stop_ids)
                recs = [{"solution": s, "problem_type": p} for s, p in zip(raw["solution"], raw["problem_type"], strict=True)]
                total, per_fn = rewards_lib.combine_rewards(texts, recs, weights, reward_options)
                extra = {}
                if r.temporal_contrast or r.length_bonus > 0:
                    start = time.perf_counter()
                    videos = ~np.asarray(raw["is_image"], bool)  # image prompts get no shuffled rollout (Video-R1)
                    contrast = r.temporal_contrast and bool(videos.any())
                    shuffled = (shuffled_accuracy(config, model_cfg, state.params, hf, recs, tokenizer, eos,
                                                  stop_ids, step, reward_options) if contrast else None)
                    shuffled_s = time.perf_counter() - start
                    bonus, extra = step_bonuses(config, per_fn["accuracy"], rollout["lengths"], shuffled, videos)
                    if shuffled is not None:
                        extra["shuffled_rollout_s"] = shuffled_s
                    total = total + bonus
                advantages = np.asarray(grpo_lib.group_advantages(total, r.group_size, r.advantage_scale,
                                                                  r.advantage_eps))
                host = build_rollout_batch(model_cfg, raw, rollout["tokens"], rollout["lengths"], advantages,
                                           group=r.group_size, micro_batches=t.micro_batches,
                                           batch_shards=batch_shards, loss_agg=r.loss_agg)
                batch = place_rollout_batch(host, mesh)
                if r.num_iterations > 1:
                    batch = batch.replace(old_logp=logprobs_fn(state.params, batch))
                if reference is not None:
                    batch = batch.replace(ref_logp=logprobs_fn(reference, batch))
                compile_log.before(batch)
                start = time.perf_counter()
                for _ in range(r.num_iterations):
                    state, metrics = update(state, batch)
                metrics = jax.device_get(metrics)
                update_s = time.perf_counter() - start
                compile_log.after()
                step += 1
                if not metrics["finite"]:
                    if t.on_nonfinite == "stop":
                        ckpt.wait()
                        raise NonFiniteLossError(f"step {step}: non-finite GRPO loss/grad norm; update not "
                                                 f"applied, last checkpoint at step {saved_step}")
                    skipped += 1
                    log.warning("step %d: non-finite GRPO loss/grad norm, update skipped (%d so far)", step, skipped)
                scalars = rollout_scalars(metrics, total, per_fn, rollout, rollout_s, update_s, r.num_iterations)
                scalars.update(extra)
                scalars["updates_skipped"] = float(not metrics["finite"])  # this step's count (summed per interval)
                logger.step(step, scalars)
                if ckpt.save(step, state, iterator.get_state(), config_dict):
                    saved_step = step
            if saved_step != step:
                ckpt.save(step, state, iterator.get_state(), config_dict, force=True)
    finally:
        ckpt.close()
        logger.flush(step)
        logger.close()
    return RunResult(step=step, status=status, last_metrics=scalars, skipped_updates=skipped)


def shuffled_accuracy(config, model_cfg, params, hf, recs, tokenizer, eos, stop_ids, step, reward_options):
    """T-GRPO's contrast rollout: accuracy [P * S] of each prompt sampled on its frames in random order.

    Frame orders and the sampling seed derive from (seed, step), so a resumed run draws the same ones.
    Only the accuracy is kept; the update uses the ordered rollouts alone.
    """
    r, v = config.rl, model_cfg.vision
    shuffled_hf, _ = shuffle_videos(hf, np.random.default_rng([config.seed, step]), channels=v.in_channels,
                                    temporal_patch=v.temporal_patch_size)
    seed = int(np.random.SeedSequence([config.seed, step, 1]).generate_state(1)[0] % 2**31)
    out = generate(model_cfg, params, **shuffled_hf, max_new_tokens=r.max_new_tokens,
                   num_samples=grpo_config.temporal_group_size(config), temperature=r.temperature, top_p=r.top_p,
                   top_k=r.top_k, eos_token_ids=eos, seed=seed)
    texts = completion_texts(tokenizer, out["tokens"], out["lengths"], stop_ids)
    _, per_fn = rewards_lib.combine_rewards(texts, recs, {"accuracy": 1.0}, reward_options)
    return per_fn["accuracy"]


def step_bonuses(config, accuracy, lengths, shuffled, videos=None) -> tuple[np.ndarray, dict]:
    """Video-R1's temporal-contrast and length bonuses [N] (0 where off) and their scalars for the log.

    `videos` (bool [P]) marks the prompts with a video; image prompts get no temporal bonus.
    """
    r = config.rl
    bonus = np.zeros(len(accuracy), np.float32)
    scalars = {}
    if shuffled is not None:
        temporal, applied = bonuses_lib.temporal_contrast_bonus(
            accuracy, shuffled, r.group_size, grpo_config.temporal_group_size(config), bonus=r.temporal_bonus,
            ratio=r.temporal_ratio, has_shuffled=videos)
        bonus += temporal
        scalars.update(shuffled_accuracy=float(np.mean(shuffled)), temporal_applied=float(np.mean(applied)),
                       reward_temporal_bonus=float(np.mean(temporal)))
    if r.length_bonus > 0:
        low, high = grpo_config.length_bonus_range(config)
        length = bonuses_lib.length_bonus(accuracy, lengths, r.group_size, bonus=r.length_bonus, low=low, high=high)
        bonus += length
        scalars["reward_length_bonus"] = float(np.mean(length))
    return bonus, scalars


def rollout_scalars(metrics, total, per_fn, rollout, rollout_s, update_s, iterations) -> dict:
    """Host scalars of one GRPO step for the logger."""
    generated = float(np.sum(rollout["lengths"]))
    out = {k: float(metrics[k]) for k in ("loss", "grad_norm", "lr", "kl", "clip_fraction", "entropy", "ratio")}
    out.update(reward_mean=float(np.mean(total)), reward_std=float(np.std(total)),
               completion_length=float(np.mean(rollout["lengths"])), rollout_s=rollout_s, update_s=update_s,
               rollout_tokens_per_s=generated / max(rollout_s, 1e-9),
               tokens_per_s=generated / max(rollout_s + update_s, 1e-9),  # completions per step second
               update_tokens_per_s=iterations * float(metrics["tokens"]) / max(update_s, 1e-9))
    for name, values in per_fn.items():
        out[f"reward_{name}"] = float(np.mean(values))
    if "accuracy" in per_fn:
        out["accuracy"] = float(np.mean(per_fn["accuracy"]))
    if "format" in per_fn:
        out["format_rate"] = float(np.mean(np.asarray(per_fn["format"]) >= 1.0))
    return out
