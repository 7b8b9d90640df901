"""The GRPO loop: prompts -> grouped rollouts -> rewards -> advantages -> num_iterations updates.

Each step samples ``rl.group_size`` completions for each of ``train.batch_size``
prompts with the compiled sampler (on the training mesh, from the current
params), scores them on the host with the configured reward functions,
normalises rewards within each group, and updates the policy with the GRPO
loss (k3 KL against the frozen starting policy). It is an objective of the
shared loop (``loop``), so checkpoints, resume (config check, damaged steps
skipped), SIGTERM / Ctrl-C, the non-finite policy and logging are SFT's; the
sampling seed derives from the step, so a resumed run draws the same
rollouts an uninterrupted one would.
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
from vtjax.train import grpo_config, loop
from vtjax.train.batch import data_shard
from vtjax.train.compile_log import CompileLog
from vtjax.train.data import record_source
from vtjax.train.frame_shuffle import shuffle_videos
from vtjax.train.grpo_step import batch_logprobs_fn, make_grpo_step
from vtjax.train.loop import RunResult
from vtjax.train.rollout_batch import build_rollout_batch, place_rollout_batch
from vtjax.train.state import init_state
from vtjax.train import synthetic
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


def grpo_data(config, model_cfg, mesh) -> loop.TrainData:
    """This process's prompt batches, the model config, the tokenizer and the prompts per epoch."""
    shard, num_shards = data_shard(mesh)
    d, t = config.data, config.train
    if d.source == "synthetic":
        inner = synthetic.from_config(config, model_cfg, shard, num_shards)
        return loop.TrainData(PromptIterator(inner), model_cfg, d.synthetic_examples, TokenIdText())
    src = record_source(config, model_cfg, require_process=False)
    pipe_cfg = pipeline.PipelineConfig(batch_size=t.batch_size // num_shards, seed=config.seed, num_epochs=None,
                                       worker_count=d.worker_count, max_bad_fraction=d.max_bad_fraction)
    ds = pipeline.grpo_pipeline(src.records, src.tokenizer, src.prompts, pipe_cfg, video=src.video, image=src.image,
                                max_length=d.max_length, process_index=shard, process_count=num_shards)
    return loop.TrainData(iter(ds), src.model_cfg, len(src.records), src.tokenizer)


def completion_texts(tokenizer, tokens: np.ndarray, lengths: np.ndarray, stop_ids) -> list[str]:
    """Decoded completions without their EOS (tags and other special tokens kept for the rewards)."""
    stop = set(int(s) for s in stop_ids)
    return [tokenizer.decode([int(x) for x in row[:n] if int(x) not in stop]) for row, n in zip(tokens, lengths, strict=True)]


class GrpoObjective:
    """One GRPO step per prompt batch: rollouts, rewards, group advantages, ``rl.num_iterations`` updates."""

    name = "grpo"

    def __init__(self, run: loop.Run):
        config, model_cfg = run.config, run.model_cfg
        t, r = config.train, config.rl
        self.run, self.config, self.model_cfg = run, config, model_cfg
        self.weights = grpo_config.reward_weights(config)
        self.reward_options = grpo_config.reward_options(config)
        self.reference = None  # the frozen starting policy (k3 KL), when rl.beta > 0
        if r.beta > 0:
            if run.resumed_step is None:  # the run starts here: keep a copy the donated updates cannot touch
                self.reference = jax.tree_util.tree_map(lambda x: x.copy(), run.state.params)
            else:
                self.reference = init_state(model_cfg, run.tx, run.mesh, seed=config.seed,
                                            init_from=config.model.init_from).params
        self.eos = tuple(int(e) for e in (model_cfg.eos_token_id,) if e is not None)
        self.stop_ids = self.eos + ((model_cfg.pad_token_id,) if model_cfg.pad_token_id is not None else ())
        self.batch_shards = run.mesh.shape["data"] * run.mesh.shape["fsdp"]
        self.logprobs_fn = batch_logprobs_fn(model_cfg, t.loss_chunk)
        self.update = jax.jit(make_grpo_step(model_cfg, run.tx, run.schedule, t, r), donate_argnums=0)
        self.compile_log = CompileLog("GRPO update step")
        self.first_step = int(jax.device_get(run.state.step))

    def local_sizes(self, raw: dict) -> np.ndarray:
        del raw
        return np.zeros(0, np.int64)  # one process: nothing to agree on besides stopping

    def step(self, state, raw: dict, sizes: np.ndarray, step: int):
        del sizes
        config, model_cfg, r, t = self.config, self.model_cfg, self.config.rl, self.config.train
        tokenizer = self.run.data.tokenizer
        hf, _ = batching.model_inputs(raw)
        if step == self.first_step:
            log.info("sampling the first rollouts: compiling the sampler for prompt shapes %s",
                     {k: tuple(np.shape(v)) for k, v in hf.items() if k.startswith(("input", "pixel"))})
        start = time.perf_counter()
        rollout = generate(model_cfg, state.params, **hf, max_new_tokens=r.max_new_tokens,
                           num_samples=r.group_size, temperature=r.temperature, top_p=r.top_p,
                           top_k=r.top_k, eos_token_ids=self.eos, seed=config.seed * 1_000_003 + step)
        rollout_s = time.perf_counter() - start
        texts = completion_texts(tokenizer, rollout["tokens"], rollout["lengths"], self.stop_ids)
        recs = [{"solution": s, "problem_type": p}
                for s, p in zip(raw["solution"], raw["problem_type"], strict=True)]
        total, per_fn = rewards_lib.combine_rewards(texts, recs, self.weights, self.reward_options)
        extra = {}
        if r.temporal_contrast or r.length_bonus > 0:
            start = time.perf_counter()
            videos = ~np.asarray(raw["is_image"], bool)  # image prompts get no shuffled rollout (Video-R1)
            contrast = r.temporal_contrast and bool(videos.any())
            shuffled = (shuffled_accuracy(config, model_cfg, state.params, hf, recs, tokenizer, self.eos,
                                          self.stop_ids, step, self.reward_options) if contrast else None)
            shuffled_s = time.perf_counter() - start
            bonus, extra = step_bonuses(config, per_fn["accuracy"], rollout["lengths"], shuffled, videos)
            if shuffled is not None:
                extra["shuffled_rollout_s"] = shuffled_s
            total = total + bonus
        advantages = np.asarray(grpo_lib.group_advantages(total, r.group_size, r.advantage_scale, r.advantage_eps))
        host = build_rollout_batch(model_cfg, raw, rollout["tokens"], rollout["lengths"], advantages,
                                   group=r.group_size, micro_batches=t.micro_batches,
                                   batch_shards=self.batch_shards, loss_agg=r.loss_agg)
        batch = place_rollout_batch(host, self.run.mesh)
        if r.num_iterations > 1:
            batch = batch.replace(old_logp=self.logprobs_fn(state.params, batch))
        if self.reference is not None:
            batch = batch.replace(ref_logp=self.logprobs_fn(self.reference, batch))
        self.compile_log.before(batch)
        start = time.perf_counter()
        for _ in range(r.num_iterations):
            state, metrics = self.update(state, batch)
        metrics = jax.device_get(metrics)
        update_s = time.perf_counter() - start
        self.compile_log.after()
        scalars = rollout_scalars(metrics, total, per_fn, rollout, rollout_s, update_s, r.num_iterations)
        scalars.update(extra)
        return state, metrics, scalars


def run(config, workdir: str) -> RunResult:
    """Trains ``config`` (a GRPO ConfigDict) with checkpoints and logs under ``workdir``."""
    sizes = grpo_config.validate(config, num_devices=jax.device_count(), process_count=jax.process_count())
    grpo_config.reward_weights(config)  # bad reward names fail before any data is read
    setup = loop.setup(config, workdir, mesh_sizes=sizes, defaults=grpo_config.grpo_defaults().to_dict(),
                       load_data=grpo_data)
    return loop.train(setup, GrpoObjective(setup), local_size_count=0)


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
