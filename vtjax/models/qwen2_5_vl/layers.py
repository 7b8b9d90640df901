"""Small building blocks shared by the vision tower and the decoder.

Every parameter carries logical axis names (``nn.with_logical_partitioning``);
the sharding rules that map them onto the mesh live in ``vtjax/train``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vtjax.ops.linear import flat_dot_general

INIT_STD = 0.02  # transformers' initializer_range for Qwen2.5-VL


def dense(features, axes: Sequence[str | None], *, name: str, use_bias: bool, dtype, param_dtype,
          contract_axes=-1) -> nn.DenseGeneral:
    """DenseGeneral whose kernel has logical ``axes`` (inputs..., outputs...).

    The bias takes the output part of ``axes``. The product runs as one 2-D
    matmul (``ops.linear.flat_dot_general``): leading activation axes folded.
    """
    features = tuple(features) if isinstance(features, (tuple, list)) else (features,)
    return nn.DenseGeneral(
        features=features, axis=contract_axes, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype,
        kernel_init=nn.with_logical_partitioning(nn.initializers.normal(INIT_STD), tuple(axes)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, tuple(axes[-len(features):])),
        dot_general=flat_dot_general, name=name)


class SwiGLU(nn.Module):
    """``down(silu(gate(x)) * up(x))``, the MLP of both the ViT (with bias) and the decoder."""

    hidden: int  # intermediate width
    use_bias: bool  # ViT MLPs have biases, decoder MLPs do not
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:  # [..., E] -> [..., E]
        kw = dict(use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype)
        gate = dense(self.hidden, ("embed", "mlp"), name="gate_proj", **kw)(x)  # [..., F]
        up = dense(self.hidden, ("embed", "mlp"), name="up_proj", **kw)(x)  # [..., F]
        down = dense(x.shape[-1], ("mlp", "embed"), name="down_proj", **kw)
        return nn.remat(gated_down)(down, gate, up)  # [..., E]


def gated_down(down: nn.Module, gate: jax.Array, up: jax.Array) -> jax.Array:
    """``down(silu(gate) * up)`` ([..., F] each -> [..., E]); run under ``nn.remat``.

    Only ``gate`` and ``up`` are kept for the backward pass, which recomputes
    ``silu(gate) * up`` (also the down projection's saved input) instead of
    keeping four [..., F] intermediates: less memory to write and read back
    (stacked over scanned layers), for a few elementwise ops of recompute.
    """
    return down(nn.silu(gate) * up)


_REMAT_POLICIES: dict[str, Callable | None] = {
    "full": None,  # save nothing, recompute the whole layer
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
    "save_attention_out": jax.checkpoint_policies.save_only_these_names("attention_out"),
}


def maybe_remat(layer_cls, policy: str, *, scanned: bool):
    """Wraps ``layer_cls`` in ``nn.remat`` with the named policy ("none" leaves it alone)."""
    if policy == "none":
        return layer_cls
    return nn.remat(layer_cls, policy=_REMAT_POLICIES[policy], prevent_cse=not scanned)


def run_layers(layer_cls, carry, broadcast_args: tuple, *, length: int, scan: bool,
               per_layer=None, layer_kwargs: dict,
               loop_layer_kwargs: Callable[[int], dict] | None = None, return_outputs: bool = False):
    """Runs ``length`` layers over ``carry``; call from inside a compact method.

    ``scan=True``: one ``nn.scan``-ed module named "layers" whose params carry a
    leading 'layers' axis; ``per_layer`` ([length, ...]) is scanned over.
    ``scan=False``: modules "layers_{i}", layer i getting ``per_layer[i]`` and the
    extra static kwargs ``loop_layer_kwargs(i)``.
    ``per_layer`` may be one array or a tuple of arrays, each [length, ...].
    The layer's call is ``(carry, *broadcast_args, *per_layer_i) -> (carry, out)``;
    with ``return_outputs`` the per-layer ``out`` pytrees come back stacked on a
    leading axis: ``(carry, outs)``.
    """
    extra = () if per_layer is None else (per_layer if isinstance(per_layer, tuple) else (per_layer,))
    if scan:
        in_axes = (nn.broadcast,) * len(broadcast_args) + (0,) * len(extra)
        scanned = nn.scan(layer_cls, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
                          in_axes=in_axes, length=length,
                          metadata_params={nn.PARTITION_NAME: "layers"})
        carry, outs = scanned(**layer_kwargs, name="layers")(carry, *broadcast_args, *extra)
        return (carry, outs) if return_outputs else carry
    outs = []
    for i in range(length):
        kwargs = dict(layer_kwargs, **(loop_layer_kwargs(i) if loop_layer_kwargs else {}))
        carry, out = layer_cls(**kwargs, name=f"layers_{i}")(carry, *broadcast_args, *(a[i] for a in extra))
        outs.append(out)
    if not return_outputs:
        return carry
    return carry, jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *outs)
