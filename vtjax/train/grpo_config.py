"""The GRPO experiment schema: the SFT fields plus ``rl``, with Video-Thinker's GRPO defaults.

Defaults follow the paper (REFERENCE.md §1): KL beta 0.04, lr 5e-6, weight
decay 0.01, max grad norm 5, batch 8 prompts; group size, temperature, top_p
and completion length follow Video-R1 (G=8, 1.0, 0.95, 768).
"""

from __future__ import annotations

import importlib

import ml_collections

from vtjax.ops.attention import resolve_impl
from vtjax.rl import grpo as grpo_lib
from vtjax.rl import rewards as rewards_lib
from vtjax.sampling import SamplingSettings, sampling_settings
from vtjax.train import config as config_lib
from vtjax.train.config import ConfigError
from vtjax.train.rollout_batch import RolloutLayout


def grpo_defaults() -> ml_collections.ConfigDict:
    c = config_lib.sft_defaults()
    c.mode = "grpo"
    c.train.batch_size = 8  # prompts per optimizer step (each sampled rl.group_size times)
    c.train.lr = 5e-6  # peak learning rate (1e-5 collapsed in the paper's ablation)
    c.train.weight_decay = 0.01  # decoupled weight decay
    c.train.max_grad_norm = 5.0  # global-norm clipping
    c.train.warmup_ratio = 0.0  # no warmup by default
    c.train.num_steps = 2500  # the released checkpoint's step
    c.checkpoint.every_steps = 100  # rollouts are costly: save more often than SFT

    c.rl = ml_collections.ConfigDict()
    c.rl.group_size = 8  # completions sampled per prompt (G)
    c.rl.max_new_tokens = 768  # completion length cap
    c.rl.temperature = 1.0  # sampling temperature of the rollouts
    c.rl.top_p = 0.95  # nucleus filter of the rollouts (1.0 = off)
    c.rl.top_k = 0  # top-k filter of the rollouts (0 = off)
    # Decode rows per prompt (0 = group_size). Fewer rows than samples batch continuously: a row whose
    # completion ends takes the prompt's next one, so rows stop idling behind the longest completion. The
    # samples are the same either way (docs/kernels.md "Continuous batching").
    c.rl.decode_rows_per_prompt = 0
    # Slots the decode loop's generated-token caches grow by, from the first loop's width to max_new_tokens
    # (0 = automatic: max_new_tokens / 4, at least 32; one compiled loop body per width). Early steps then read
    # fewer cache slots; max_new_tokens gives one loop, the shortest compile. Same samples either way
    # (docs/kernels.md "Decode attention").
    c.rl.decode_cache_growth = 0
    # Gather the live decode rows into fewer as completions end (rows per prompt R, 3R/4, R/2, R/4, .., 1),
    # so finished rows stop costing where a step's cost grows with its rows (the CPU, or many rows per
    # device). Same samples; one compiled loop body per (cache width, row level), so a longer compile
    # (docs/kernels.md "Continuous batching").
    c.rl.decode_compact_rows = False
    # Layout of the update and log-prob passes: on lays each group out once, its prompt then its G completions
    # (each sees the prompt and itself), instead of G copies of prompt + completion; same log-probs, a group
    # costs prompt + G completions. auto = on when train.batch_size / train.micro_batches prompts split over
    # the data axes (one sequence per prompt) and the attention is not cudnn; off = repeated rows
    # (docs/rl.md "Shared-prefix updates").
    c.rl.shared_prefix = "auto"
    c.rl.beta = 0.04  # weight of the k3 KL penalty against the starting policy (0 = no reference)
    c.rl.clip_eps_low = 0.2  # ratio clip range [1 - low, 1 + high] (matters when num_iterations > 1)
    c.rl.clip_eps_high = 0.2  # upper side of the clip range
    c.rl.clip = True  # False: plain ratio * advantage, as Video-R1
    c.rl.num_iterations = 1  # updates per batch of rollouts
    c.rl.reward_weights = "accuracy=1.0,format=1.0"  # name=weight from vtjax.rl.rewards.REWARDS
    c.rl.reward_modules = ""  # comma-separated modules imported first; they register rewards (docs/rl.md)
    c.rl.reward_rules = "video_r1"  # video_r1 | lenient: accuracy rules (Video-R1's as released; docs/rl.md)
    c.rl.time_format = "mm:ss"  # mm:ss | long: <time> stamps the format reward accepts (long: MMM:SS, HH:MM:SS)
    c.rl.advantage_scale = "group"  # group | batch | none: what the centred reward is divided by
    c.rl.advantage_eps = 1e-4  # added to the std
    c.rl.loss_agg = "seq-mean-token-mean"  # seq-mean-token-mean | token-mean | seq-mean-token-sum-norm
    # Video-R1's optional bonuses (docs/rl.md "Bonuses"; its video GRPO script turns both on). Both need
    # `accuracy` in rl.reward_weights: "correct" is an unweighted accuracy > 0.1. Bonuses add to the total.
    c.rl.temporal_contrast = False  # T-GRPO (Video-R1 --temporal): also sample each prompt on shuffled frames
    c.rl.temporal_group_size = 0  # shuffled-frame completions per prompt; 0 = max(1, group_size // 2) (Video-R1)
    c.rl.temporal_bonus = 0.3  # added to correct completions of a prompt whose ordered accuracy ...
    c.rl.temporal_ratio = 0.8  # ... is >= this times its shuffled accuracy (Video-R1: 0.3 and 0.8)
    c.rl.length_bonus = 0.0  # added to correct completions in length_bonus_range (Video-R1 --len_control: 0.2)
    c.rl.length_bonus_range = "320,512"  # inclusive completion tokens (EOS counted), given >= 2 correct per prompt
    return c


def import_reward_modules(config) -> None:
    """Imports ``rl.reward_modules`` (each registers its rewards with ``vtjax.rl.rewards.register_reward``)."""
    for name in config_lib.split_list(config.rl.get("reward_modules", "")):
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ConfigError(f"rl.reward_modules: cannot import {name!r} ({e}); put its directory on "
                              "PYTHONPATH") from e


def reward_weights(config) -> dict[str, float]:
    """``"accuracy=1,format=0.5"`` -> {"accuracy": 1.0, "format": 0.5}, names checked."""
    import_reward_modules(config)
    weights = {}
    for item in config_lib.split_list(config.rl.reward_weights):
        name, _, value = item.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError as e:
            raise ConfigError(f"rl.reward_weights item {item!r} must be name=number") from e
    unknown = sorted(set(weights) - set(rewards_lib.REWARDS))
    if unknown or not weights:
        raise ConfigError(f"rl.reward_weights={config.rl.reward_weights!r}: unknown or no reward names "
                          f"{unknown}; registered: {sorted(rewards_lib.REWARDS)}")
    return weights


def reward_options(config) -> rewards_lib.RewardOptions:
    """``rl.reward_rules`` and ``rl.time_format`` as the rewards' options, values checked."""
    choices = (("reward_rules", rewards_lib.RewardRules), ("time_format", rewards_lib.TimeFormat))
    for name, kind in choices:
        if config.rl[name] not in {k.value for k in kind}:
            raise ConfigError(f"rl.{name}={config.rl[name]!r} must be one of {[k.value for k in kind]}")
    return rewards_lib.RewardOptions(rewards_lib.RewardRules(config.rl.reward_rules),
                                     rewards_lib.TimeFormat(config.rl.time_format))


def rollout_settings(config, model_cfg) -> SamplingSettings:
    """The rollout sampler's settings from ``rl.*``: one place for the trainer and the AOT memory report."""
    r = config.rl
    return sampling_settings(model_cfg, max_new_tokens=r.max_new_tokens, num_samples=r.group_size,
                             temperature=r.temperature, top_p=r.top_p, top_k=r.top_k,
                             rows_per_prompt=r.decode_rows_per_prompt, cache_growth=r.decode_cache_growth,
                             compact_rows=r.decode_compact_rows)


def temporal_group_size(config) -> int:
    """Shuffled-frame completions per prompt: ``rl.temporal_group_size``, or max(1, G // 2) when 0."""
    r = config.rl
    return int(r.temporal_group_size) or max(1, int(r.group_size) // 2)


def length_bonus_range(config) -> tuple[int, int]:
    """``rl.length_bonus_range`` ``"320,512"`` -> (320, 512), checked."""
    items = config_lib.split_list(config.rl.length_bonus_range)
    try:
        low, high = (int(x) for x in items)
    except ValueError as e:
        raise ConfigError(f"rl.length_bonus_range={config.rl.length_bonus_range!r} must be two token counts "
                          f"'LOW,HIGH' (Video-R1: '320,512')") from e
    if not 0 <= low <= high:
        raise ConfigError(f"rl.length_bonus_range={config.rl.length_bonus_range!r} needs 0 <= LOW <= HIGH")
    return low, high


def _validate_bonuses(config, weights: dict[str, float]):
    r = config.rl
    if not isinstance(r.temporal_contrast, bool):
        raise ConfigError(f"rl.temporal_contrast={r.temporal_contrast!r} must be True or False")
    for name in ("temporal_bonus", "temporal_ratio", "length_bonus"):
        if not 0 <= r[name] < float("inf"):
            raise ConfigError(f"rl.{name}={r[name]} must be a finite number >= 0")
    if r.temporal_group_size < 0:
        raise ConfigError(f"rl.temporal_group_size={r.temporal_group_size} must be >= 0 (0 = group_size // 2)")
    length_bonus_range(config)
    on = [n for n, v in (("rl.temporal_contrast", r.temporal_contrast), ("rl.length_bonus", r.length_bonus > 0)) if v]
    if on and "accuracy" not in weights:
        raise ConfigError(f"{' and '.join(on)} need the accuracy reward: add accuracy=1.0 to "
                          f"rl.reward_weights={r.reward_weights!r}")


def validate(config, *, num_devices: int, process_count: int = 1) -> dict[str, int]:
    """The SFT checks, then the rl fields; returns the mesh sizes."""
    r = config.rl
    if r.group_size < 1:
        raise ConfigError(f"rl.group_size={r.group_size} must be at least 1")
    b, g = config.train.batch_size, r.group_size
    rows = (f"train.batch_size*rl.group_size={b}*{g}={b * g}", b * g)  # the update runs over all completions
    sizes = config_lib.validate(config, num_devices=num_devices, process_count=process_count, rows=rows)
    if b % process_count:
        raise ConfigError(f"train.batch_size={b} prompts do not split over the {process_count} processes (a "
                          f"prompt's group is sampled and scored on one process); make it a multiple of "
                          f"{process_count}")
    if r.group_size < 2 and r.advantage_scale == "group":
        raise ConfigError(f"rl.group_size={r.group_size}: group advantages need at least 2 samples per prompt")
    for name in ("max_new_tokens", "num_iterations"):
        if r[name] < 1:
            raise ConfigError(f"rl.{name}={r[name]} must be at least 1")
    if not 0 <= r.decode_rows_per_prompt <= g:
        raise ConfigError(f"rl.decode_rows_per_prompt={r.decode_rows_per_prompt} must be in 1..rl.group_size={g} "
                          f"(0 = group_size)")
    if r.decode_cache_growth < 0:
        raise ConfigError(f"rl.decode_cache_growth={r.decode_cache_growth} must be at least 1 (0 = automatic)")
    if r.temperature <= 0 or not 0 < r.top_p <= 1 or r.top_k < 0:
        raise ConfigError(f"rl.temperature={r.temperature} must be > 0, rl.top_p={r.top_p} in (0, 1], "
                          f"rl.top_k={r.top_k} >= 0")
    if r.beta < 0 or r.clip_eps_low < 0 or r.clip_eps_high < 0:
        raise ConfigError("rl.beta, rl.clip_eps_low and rl.clip_eps_high must be >= 0")
    if r.advantage_scale not in grpo_lib.ADVANTAGE_SCALES:
        raise ConfigError(f"rl.advantage_scale={r.advantage_scale!r} must be one of {grpo_lib.ADVANTAGE_SCALES}")
    if r.loss_agg not in grpo_lib.AGGREGATIONS:
        raise ConfigError(f"rl.loss_agg={r.loss_agg!r} must be one of {grpo_lib.AGGREGATIONS}")
    _validate_bonuses(config, reward_weights(config))
    reward_options(config)
    rollout_layout(config, sizes, process_count)
    return sizes


SHARED_PREFIX_CHOICES = ("auto", "on", "off")


def rollout_layout(config, sizes: dict[str, int], process_count: int) -> RolloutLayout:
    """The update's sequence layout from ``rl.shared_prefix``; "on" where it cannot run raises ConfigError."""
    choice = str(config.rl.shared_prefix).lower()
    if choice not in SHARED_PREFIX_CHOICES:
        raise ConfigError(f"rl.shared_prefix={config.rl.shared_prefix!r} must be one of {SHARED_PREFIX_CHOICES}")
    if choice == "off":
        return RolloutLayout.REPEATED
    try:  # one sequence per prompt: the prompts of a micro-batch split over the data axes
        config_lib.check_batch_split(f"train.batch_size={config.train.batch_size}", config.train.batch_size,
                                     config.train.micro_batches, sizes["data"] * sizes["fsdp"], process_count)
    except ConfigError as e:
        if choice == "on":
            raise ConfigError(f"rl.shared_prefix=on lays out one sequence per prompt: {e}") from None
        return RolloutLayout.REPEATED
    if choice == "auto" and resolve_impl(config.model.attention_impl) == "cudnn":  # no branch ids there
        return RolloutLayout.REPEATED
    return RolloutLayout.SHARED_PREFIX
