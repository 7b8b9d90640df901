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

import dataclasses
import logging

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from vtjax.data import pipeline
from vtjax.data.batching import real_rows
from vtjax.rl import bonuses as bonuses_lib
from vtjax.rl import grpo as grpo_lib
from vtjax.rl import rewards as rewards_lib
from vtjax.sampling import sample
from vtjax.train import grpo_config, loop, synthetic
from vtjax.train.batch import BATCH_AXES, data_shard
from vtjax.train.compile_log import CompileLog
from vtjax.train.data import record_source
from vtjax.train.flops import peak_tflops, text_forward_flops, vision_forward_flops
from vtjax.train.frame_shuffle import shuffle_rows
from vtjax.train.grpo_step import batch_logprobs_fn, encode_fn, make_grpo_step, vision_trains
from vtjax.train.loop import RunResult
from vtjax.train.phases import PhaseClock
from vtjax.train.rollout import RolloutPrompts, gather_blocks, host_copy
from vtjax.train.rollout_batch import (RolloutLayout, build_rollout_batch, place_rollout_batch,
                                       shared_sequence_length)
from vtjax.train.state import initial_params
from vtjax.train.update import jit_update
from vtjax.train.synthetic import SyntheticIterator

log = logging.getLogger("vtjax.grpo")
group_advantages = jax.jit(grpo_lib.group_advantages, static_argnames=("group_size", "scale", "eps"))


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
    """One GRPO step per prompt batch: rollouts, rewards, group advantages, ``rl.num_iterations`` updates.

    Every program runs over global arrays on the training mesh; each process decodes and scores the
    completions of its own prompts, and the rewards are exchanged so advantages and logs are global.
    """

    name = "grpo"
    size_count = 3  # prompt length, patches, frame bucket

    def __init__(self, run: loop.Run):
        config, model_cfg = run.config, run.model_cfg
        t, r = config.train, config.rl
        self.run, self.config, self.model_cfg = run, config, model_cfg
        self.weights = grpo_config.reward_weights(config)
        self.reward_options = grpo_config.reward_options(config)
        self.settings = grpo_config.rollout_settings(config, model_cfg)
        self.stop_ids = self.settings.eos_token_ids + (self.settings.pad_token_id,)
        self.prompts = RolloutPrompts(model_cfg, run.mesh, self.settings.pad_token_id)
        self.prompts_per_block = t.batch_size // self.prompts.num_blocks
        self.trains_vision = vision_trains(run.state.params, t.freeze)
        self.encode = encode_fn(model_cfg, t.freeze, self.prompts.feature_sharding(), with_pullback=False)
        self.encode_with_pullback = encode_fn(model_cfg, t.freeze, self.prompts.feature_sharding(),
                                              with_pullback=True)
        self.logprobs_fn = batch_logprobs_fn(model_cfg, t.loss_chunk,
                                             NamedSharding(run.mesh, P(None, BATCH_AXES)))
        # The frozen starting policy (k3 KL), when rl.beta > 0: with LoRA, the policy's own base weights
        # with the adapters off (no copy: a model without adapters ignores them); else a copy of the params.
        self.reference = None  # its own params; None with LoRA (or no KL)
        self.reference_encode, self.reference_logprobs_fn = self.encode, self.logprobs_fn
        self.uses_reference = r.beta > 0
        if r.beta > 0 and model_cfg.lora is not None:
            base_cfg = model_cfg.replace(lora=None)
            self.reference_encode = encode_fn(base_cfg, t.freeze, self.prompts.feature_sharding(),
                                              with_pullback=False)
            self.reference_logprobs_fn = batch_logprobs_fn(base_cfg, t.loss_chunk,
                                                           NamedSharding(run.mesh, P(None, BATCH_AXES)))
        elif r.beta > 0 and run.resumed_step is None:  # starts here: a copy the donated updates cannot touch
            self.reference = jax.tree_util.tree_map(lambda x: x.copy(), run.state.params)
        elif r.beta > 0:
            self.reference = initial_params(model_cfg, run.shardings.params, run.mesh, seed=config.seed,
                                            init_from=config.model.init_from)
        self.step_fns = {last: make_grpo_step(model_cfg, run.tx, run.schedule, t, r, last=last, seed=config.seed)
                         for last in (False, True)}
        self.compiled: dict = {}  # (batch, vision) tree structure -> jitted update
        self.compile_log = CompileLog("GRPO update step")
        self.layout = grpo_config.rollout_layout(config, dict(run.mesh.shape), jax.process_count())
        log.info("GRPO update layout: %s", self.layout.value)
        self.first_step = int(jax.device_get(run.state.step))
        self.peak = config.log.peak_tflops or peak_tflops(jax.devices()[0].device_kind)

    def local_sizes(self, raw: dict) -> np.ndarray:
        return self.prompts.local_sizes(raw)

    def step(self, state, raw: dict, sizes: np.ndarray, step: int):
        config, model_cfg, r, t = self.config, self.model_cfg, self.config.rl, self.config.train
        clock = PhaseClock()
        host_prompts = self.prompts.host(raw, sizes)
        prompts = self.prompts.to_global(host_prompts)
        if step == self.first_step:
            log.info("sampling the first rollouts: compiling the sampler for %d prompts of %d tokens, %d patches",
                     config.train.batch_size, int(sizes[0]), int(sizes[1]) * self.prompts.num_blocks)
        with clock("vision"):  # the step's one pass of the policy's tower (kept for its backward if it trains)
            encode = self.encode_with_pullback if self.trains_vision else self.encode
            encoded = jax.block_until_ready(encode(state.params, prompts.inputs.vision))
            features, pullback = encoded if self.trains_vision else (encoded, None)
        timings = {}
        out = sample(model_cfg, state.params, prompts, self.settings, config.seed * 1_000_003 + step,
                     features=features, rows=self.prompts.row_sharding(), timings=timings)
        clock.add(prefill=timings["prefill_s"], decode=timings["decode_s"])
        tokens, lengths = host_copy(out["tokens"]), host_copy(out["lengths"])  # all N rows, every process
        # Every first token from the prefill, then the rows each loop iteration computed.
        decode_row_steps = lengths.size + int(host_copy(out["decode_row_steps"]))
        mine = lambda x, g=r.group_size: self.prompts.local_rows(x, g, self.prompts_per_block)  # noqa: E731
        with clock("reward"):
            texts = completion_texts(self.run.data.tokenizer, mine(tokens), mine(lengths), self.stop_ids)
            recs = [{"solution": s, "problem_type": p} for s, p in zip(raw["solution"], raw["problem_type"],
                                                                       strict=True)]
            total, per_fn = rewards_lib.combine_rewards(texts, recs, self.weights, self.reward_options)
        extra = {}
        if r.temporal_contrast or r.length_bonus > 0:
            with clock("shuffled_rollout"):
                shuffled = self._shuffled_accuracy(state.params, raw, sizes, recs, step)
            with clock("reward"):
                videos = ~np.asarray(raw["is_image"], bool)  # image prompts get no shuffled rollout (Video-R1)
                bonus, extra = step_bonuses(config, per_fn["accuracy"], mine(lengths), shuffled, videos)
                total = total + bonus
                names = sorted(extra)  # means over this process's prompts -> over all (equal-sized blocks)
                means = gather_blocks(np.asarray([[extra[k] for k in names]], np.float64), self.prompts.block,
                                      self.prompts.num_blocks)
                extra = {k: float(v) for k, v in zip(names, means.mean(axis=0), strict=True)}
        with clock("reward"):
            columns = np.stack([total] + [np.asarray(v, np.float64) for v in per_fn.values()], axis=1)
            every = gather_blocks(columns, self.prompts.block, self.prompts.num_blocks)  # [N, 1 + rewards]
            advantages = jax.device_get(group_advantages(jax.device_put(every[:, 0].astype(np.float32)),
                                                         group_size=r.group_size, scale=r.advantage_scale,
                                                         eps=r.advantage_eps))
            length = (shared_sequence_length(host_prompts.inputs.input_ids.shape[1], lengths,
                                                           r.group_size)  # agreed: global lengths
                      if self.layout == RolloutLayout.SHARED_PREFIX else None)
            host = build_rollout_batch(model_cfg, host_prompts, raw, mine(tokens), mine(lengths), mine(advantages),
                                       group=r.group_size, micro_batches=t.micro_batches, layout=self.layout,
                                       length=length)
            batch = place_rollout_batch(host, self.run.mesh, self.prompts.num_blocks)
        if r.num_iterations > 1:
            with clock("old_logp"):
                batch = batch.replace(old_logp=jax.block_until_ready(self.logprobs_fn(state.params, batch, features)))
        if self.uses_reference:
            with clock("ref_logp"):
                reference = state.params if self.reference is None else self.reference
                ref_features = (self.reference_encode(reference, prompts.inputs.vision) if self.trains_vision
                                else features)  # a frozen tower is the reference's too
                batch = batch.replace(ref_logp=jax.block_until_ready(
                    self.reference_logprobs_fn(reference, batch, ref_features)))
        self.compile_log.before(batch)
        with clock("update"):
            for iteration in range(r.num_iterations):  # later iterations: params moved, encode again
                inputs = (batch, prompts.inputs.vision, features, pullback if iteration == 0 else None)
                last = iteration == r.num_iterations - 1
                state, metrics = self._update_for(inputs, last)(state, *inputs)
            metrics = jax.device_get(metrics)
        self.compile_log.after()
        per_fn_all = {name: every[:, 1 + i] for i, name in enumerate(per_fn)}
        scalars = rollout_scalars(metrics, every[:, 0], per_fn_all, lengths, decode_row_steps, clock,
                                  r.num_iterations)
        scalars.update(extra)
        if self.peak:
            flops = r.num_iterations * grpo_update_flops(model_cfg, raw, mine(lengths), self.trains_vision,
                                                         self.prompts.num_blocks, self.layout)
            scalars["update_mfu"] = flops / (clock.seconds["update"] * jax.device_count() * self.peak * 1e12)
        return state, metrics, scalars

    def _update_for(self, inputs: tuple, last: bool):
        """The jitted update for this input layout (explicit shardings, state donated), compiled once."""
        key = (jax.tree_util.tree_structure(inputs), last)
        if key not in self.compiled:
            shardings = jax.tree_util.tree_map(lambda x: x.sharding, inputs)
            self.compiled[key] = jit_update(self.step_fns[last], self.run.shardings, shardings, self.run.mesh)
        return self.compiled[key]

    def _shuffled_accuracy(self, params, raw, sizes, recs, step) -> np.ndarray | None:
        """T-GRPO's contrast rollout: accuracy [B_local * S] of each of this process's prompts sampled on its
        frames in random order, or None when the batch has no video.

        Frame orders derive from (seed, step, global prompt), the sampling seed from (seed, step): a resumed
        run, or one on another number of processes, draws the same ones. Only the accuracy is kept.
        """
        config, v = self.config, self.model_cfg.vision
        videos = ~np.asarray(raw["is_image"], bool)
        if not (config.rl.temporal_contrast and bool(gather_blocks(videos, self.prompts.block,
                                                                   self.prompts.num_blocks).any())):
            return None
        first = self.prompts.block * self.prompts_per_block
        rngs = [np.random.default_rng([config.seed, step, first + i]) for i in range(len(videos))]
        rows = shuffle_rows(real_rows(raw), raw["grid_thw"], raw["is_image"], rngs, channels=v.in_channels,
                            temporal_patch=v.temporal_patch_size)
        prompts = self.prompts(raw, sizes, vision_rows=rows)
        group = grpo_config.temporal_group_size(config)
        settings = dataclasses.replace(self.settings, num_samples=group,
                                       rows_per_prompt=min(self.settings.rows_per_prompt, group))
        seed = int(np.random.SeedSequence([config.seed, step, 1]).generate_state(1)[0] % 2**31)
        features = self.encode(params, prompts.inputs.vision)
        out = sample(self.model_cfg, params, prompts, settings, seed, features=features,
                     rows=self.prompts.row_sharding())
        mine = lambda x: self.prompts.local_rows(host_copy(x), group, self.prompts_per_block)  # noqa: E731
        texts = completion_texts(self.run.data.tokenizer, mine(out["tokens"]), mine(out["lengths"]), self.stop_ids)
        _, per_fn = rewards_lib.combine_rewards(texts, recs, {"accuracy": 1.0}, self.reward_options)
        return np.asarray(per_fn["accuracy"])


def run(config, workdir: str) -> RunResult:
    """Trains ``config`` (a GRPO ConfigDict) with checkpoints and logs under ``workdir``."""
    sizes = grpo_config.validate(config, num_devices=jax.device_count(), process_count=jax.process_count())
    setup = loop.setup(config, workdir, mesh_sizes=sizes, defaults=grpo_config.grpo_defaults().to_dict(),
                       load_data=grpo_data, updates_per_step=config.rl.num_iterations)
    return loop.train(setup, GrpoObjective(setup))


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


def rollout_scalars(metrics, total, per_fn, lengths, decode_row_steps: int, clock: "PhaseClock", iterations) -> dict:
    """Host scalars of one GRPO step for the logger (rewards and lengths over all N rows).

    Phase seconds (``<phase>_s``) and their share of the step (``<phase>_share``), rollout and update
    throughput, and ``decode_finished_fraction``: the share of the ``decode_row_steps`` the sampler computed
    (one token of one row each) that went to rows with no completion left to extend.
    """
    lengths = np.asarray(lengths)
    generated = float(np.sum(lengths))
    out = {k: float(metrics[k]) for k in ("loss", "grad_norm", "lr", "kl", "clip_fraction", "entropy", "ratio")}
    rollout_s = clock.seconds.get("prefill", 0.0) + clock.seconds.get("decode", 0.0)
    update_s = clock.seconds["update"]
    out.update(reward_mean=float(np.mean(total)), reward_std=float(np.std(total)),
               completion_length=float(np.mean(lengths)), rollout_s=rollout_s,
               rollout_tokens_per_s=generated / max(rollout_s, 1e-9),
               tokens_per_s=generated / max(clock.total(), 1e-9),  # completions per step second
               update_tokens_per_s=iterations * float(metrics["tokens"]) / max(update_s, 1e-9),
               decode_finished_fraction=1.0 - generated / max(float(decode_row_steps), 1.0),
               step_time_s=clock.total())
    out.update(clock.scalars())
    for name, values in per_fn.items():
        out[f"reward_{name}"] = float(np.mean(values))
    if "accuracy" in per_fn:
        out["accuracy"] = float(np.mean(per_fn["accuracy"]))
    if "format" in per_fn:
        out["format_rate"] = float(np.mean(np.asarray(per_fn["format"]) >= 1.0))
    return out


def grpo_update_flops(config, raw, lengths, trains_vision: bool, num_blocks: int,
                      layout: RolloutLayout = RolloutLayout.REPEATED) -> float:
    """Model FLOPs of one GRPO update: every sequence's real tokens through the decoder (forward + backward)
    and, when the tower trains, the step's videos through it once (forward + backward). The shared-prefix
    layout counts one sequence per group (its attention as if dense: an upper bound).

    ``raw`` / ``lengths``: this process's prompts and completion lengths; the other processes' blocks
    are counted as the same size (an estimate for the log, not a measurement).
    """
    prompt_tokens = np.asarray(raw["attention_mask"]).sum(axis=1)  # [B_local]
    group = len(lengths) // len(prompt_tokens)
    if layout == RolloutLayout.SHARED_PREFIX:
        rows = prompt_tokens + np.asarray(lengths).reshape(-1, group).sum(axis=1)
    else:
        rows = np.repeat(prompt_tokens, group) + np.asarray(lengths)
    flops = 3 * text_forward_flops(config, rows) * num_blocks
    if trains_vision:
        flops += 3 * vision_forward_flops(config, raw["grid_thw"]) * num_blocks
    return flops
