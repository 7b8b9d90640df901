"""AdamW with warmup + cosine decay, global-norm clipping, a weight-decay mask and frozen parts.

Decay applies to matmul kernels only by default: norms' scales, biases and the
token embedding keep their values (``train.decay_all_params`` decays all).
Frozen parts (``train.freeze``, and with LoRA everything but the adapters) get no optimizer state and
no update.
"""

from __future__ import annotations

import functools
import logging

import jax
import optax

from vtjax.models.qwen2_5_vl import lora
from vtjax.train.config import split_list

log = logging.getLogger("vtjax.train")

# Parameter path prefixes of each freezable part.
FREEZE_PREFIXES = {
    "vision": (("visual", "patch_embed"), ("visual", "layers")),  # the ViT without its merger
    "merger": (("visual", "merger"),),  # the 2-layer MLP that maps ViT features to LLM width
}


def _names(path) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def decay_mask(params, decay_all: bool = False):
    """True where weight decay applies: kernels (not norms, biases, embeddings) unless ``decay_all``."""
    return jax.tree_util.tree_map_with_path(lambda p, _: decay_all or _names(p)[-1] == "kernel", params)


def frozen_mask(params, freeze: str | tuple = ""):
    """True on parameters of the parts named in ``freeze`` ("vision", "merger"), and, when the params hold
    LoRA adapters, on every parameter that is not an adapter (LoRA trains the adapters only)."""
    prefixes = [pre for part in split_list(freeze) for pre in FREEZE_PREFIXES[part]]
    adapters = has_adapters(params)

    def frozen(path, _):
        names = _names(path)
        return any(names[: len(pre)] == pre for pre in prefixes) or (adapters and not lora.is_adapter(path))

    return jax.tree_util.tree_map_with_path(frozen, params)


def has_adapters(params) -> bool:
    return any(lora.is_adapter(path) for path, _ in jax.tree_util.tree_leaves_with_path(params))


def lr_schedule(lr: float, num_steps: int, warmup_steps: int, end_lr_ratio: float) -> optax.Schedule:
    """0 -> lr linearly over ``warmup_steps``, then cosine down to lr * end_lr_ratio at ``num_steps``."""
    warmup_steps = min(warmup_steps, num_steps)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=lr, warmup_steps=warmup_steps,
        decay_steps=max(num_steps, warmup_steps + 1), end_value=lr * end_lr_ratio)


def warmup_steps_for(train_cfg, num_steps: int) -> int:
    """``train.warmup_steps`` (or ``warmup_ratio`` of the run), at most ``num_steps``; warns when it clamps."""
    warmup = int(train_cfg.warmup_steps or round(train_cfg.warmup_ratio * num_steps))
    if warmup > num_steps:
        _warn_clamped(warmup, num_steps)
    return min(warmup, num_steps)


@functools.lru_cache(maxsize=None)  # once per run: the trainers ask for the warmup twice
def _warn_clamped(warmup: int, num_steps: int) -> None:
    log.warning("train.warmup_steps=%d is more than the run's %d steps: warming up over all %d steps "
                "instead (the peak train.lr is reached only at the end); lower train.warmup_steps or use "
                "train.warmup_ratio", warmup, num_steps, num_steps)


def make_optimizer(train_cfg, params, num_steps: int, updates_per_step: int = 1) -> optax.GradientTransformation:
    """The optimizer of ``train_cfg`` (the ``config.train`` block) for ``params`` (arrays or shapes).

    ``updates_per_step``: optimizer updates in one training step (GRPO's ``rl.num_iterations``); the
    learning rate follows the step, so the updates of one step share it.
    """
    per_step = lr_schedule(train_cfg.lr, num_steps, warmup_steps_for(train_cfg, num_steps),
                           train_cfg.end_lr_ratio)
    schedule = per_step if updates_per_step == 1 else (lambda count: per_step(count // updates_per_step))
    parts = []
    if train_cfg.max_grad_norm > 0:
        parts.append(optax.clip_by_global_norm(train_cfg.max_grad_norm))
    parts.append(optax.adamw(
        schedule, b1=train_cfg.b1, b2=train_cfg.b2, eps=train_cfg.eps,
        weight_decay=train_cfg.weight_decay,
        mask=lambda p: decay_mask(p, train_cfg.decay_all_params)))
    tx = optax.chain(*parts)
    if not split_list(train_cfg.freeze) and not has_adapters(params):
        return tx
    labels = jax.tree_util.tree_map(lambda f: "frozen" if f else "train", frozen_mask(params, train_cfg.freeze))
    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
