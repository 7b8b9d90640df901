"""Low-rank adapters (LoRA) on the model's projections, added without changing any module.

A ``LoraSpec`` in the model config (``Qwen25VLConfig.lora``) names the
projections that get adapters by a regex over module paths, with the layer
index left out so that one pattern selects the same modules whether the
layers are scanned or unrolled: ``layers/q_proj``, ``layers/mlp/down_proj``,
``visual/layers/qkv``, ``visual/merger/fc1``. Each selected projection
``y = x W (+ b)`` becomes

    y = x W (+ b) + scale * dropout(x) A B,   A [in..., r], B [r, out...],

with ``scale = alpha / r`` (``alpha / sqrt(r)`` with rsLoRA), A drawn like
PEFT's default (uniform in +-1/sqrt(fan_in)) and B zero, so a fresh adapter
leaves the model's output unchanged. The adapters are params named
``lora_a`` and ``lora_b`` beside the projection's ``kernel``; they carry the
kernel's logical axes (the rank axis unsharded), so they shard like their
base weight. Dropout applies only when the caller passes a ``dropout`` rng.

The adapters come in through a Linen method interceptor that the model
installs around its public methods: every projection module stays as it is,
and a model whose config has ``lora=None`` runs the same params tree as the
base alone (its adapters are ignored). That is how GRPO's reference policy
reuses the policy's own base weights.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import math
import re

import flax.linen as nn
import jax
import jax.numpy as jnp

from vtjax.ops.linear import flat_dot_general

ADAPTER_NAMES = ("lora_a", "lora_b")
DECODER_PROJECTIONS = r"^layers/(q_proj|k_proj|v_proj|o_proj|mlp/(gate_proj|up_proj|down_proj))$"


@dataclasses.dataclass(frozen=True)
class LoraSpec:
    """Which projections get adapters, and how large."""

    rank: int = 16  # r, the adapters' inner width
    alpha: float = 32.0  # the update is scaled by alpha / r (alpha / sqrt(r) with rslora)
    dropout: float = 0.0  # dropout on the adapter's input while training (needs a 'dropout' rng)
    targets: str = DECODER_PROJECTIONS  # regex searched in module paths such as 'layers/mlp/up_proj'
    rslora: bool = False  # rank-stabilised scaling alpha / sqrt(r)
    # Storage dtype of the frozen base while training ("" = the model's param_dtype); a storage policy,
    # not part of what the adapters are (left out of comparisons).
    base_dtype: str = dataclasses.field(default="", compare=False)

    def __post_init__(self):
        if self.rank < 1:
            raise ValueError(f"lora.rank={self.rank} must be at least 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora.dropout={self.dropout} must be in [0, 1)")
        if self.base_dtype not in ("", "float32", "bfloat16"):
            raise ValueError(f"lora.base_dtype={self.base_dtype!r} must be '', 'float32' or 'bfloat16'")
        try:
            re.compile(self.targets)
        except re.error as err:
            raise ValueError(f"lora.targets={self.targets!r} is not a regex: {err}") from None

    @property
    def scale(self) -> float:
        return self.alpha / (math.sqrt(self.rank) if self.rslora else self.rank)

    def selects(self, path: str) -> bool:
        return re.search(self.targets, path) is not None


def module_path(names) -> str:
    """'/'-joined module or parameter path with the decoder's layer index dropped (layers_3 -> layers)."""
    return "/".join(re.sub(r"^layers_\d+$", "layers", str(n)) for n in names)


_ACTIVE = contextvars.ContextVar("vtjax_lora_active", default=False)


def adapted(method):
    """Decorates a ``Qwen25VL`` method: with ``config.lora`` set, its projections get adapters (once, also
    when one adapted method calls another)."""

    @functools.wraps(method)
    def wrapped(self, *args, **kwargs):
        spec = self.config.lora
        if spec is None or _ACTIVE.get():
            return method(self, *args, **kwargs)
        token = _ACTIVE.set(True)
        try:
            with nn.intercept_methods(functools.partial(_intercept, spec)):
                return method(self, *args, **kwargs)
        finally:
            _ACTIVE.reset(token)

    return wrapped


def _intercept(spec: LoraSpec, next_fun, args, kwargs, context):
    module = context.module
    if (context.method_name != "__call__" or not isinstance(module, nn.DenseGeneral)
            or not spec.selects(module_path(module.path))):
        return next_fun(*args, **kwargs)
    return next_fun(*args, **kwargs) + _adapter(spec, module, args[0])


def _adapter(spec: LoraSpec, module: nn.DenseGeneral, x: jax.Array) -> jax.Array:
    """scale * dropout(x) A B for one DenseGeneral that contracts x's trailing axes."""
    axes = module.axis if isinstance(module.axis, tuple) else (module.axis,)
    n = len(axes)
    if tuple(a % x.ndim for a in axes) != tuple(range(x.ndim - n, x.ndim)):
        raise ValueError(f"LoRA needs a projection over trailing axes; {module_path(module.path)} contracts {axes}")
    features = module.features if isinstance(module.features, tuple) else (module.features,)
    in_shape = x.shape[x.ndim - n:]
    names = _kernel_axes(module, in_shape + features)
    a = module.param("lora_a", nn.with_logical_partitioning(_uniform_fan_in(math.prod(in_shape)),
                                                            names[:n] + (None,)),
                     in_shape + (spec.rank,), module.param_dtype)  # [in..., r]
    b = module.param("lora_b", nn.with_logical_partitioning(nn.initializers.zeros, (None,) + names[n:]),
                     (spec.rank,) + features, module.param_dtype)  # [r, out...]
    if spec.dropout > 0 and module.has_rng("dropout"):  # inverted dropout on the adapter's input only
        keep = jax.random.bernoulli(module.make_rng("dropout"), 1.0 - spec.dropout, x.shape)
        x = jnp.where(keep, x / (1.0 - spec.dropout), 0.0).astype(x.dtype)
    x, a, b = (t.astype(module.dtype or x.dtype) for t in (x, a, b))
    low = flat_dot_general(x, a, ((tuple(range(x.ndim - n, x.ndim)), tuple(range(n))), ((), ())))  # [..., r]
    out = flat_dot_general(low, b, (((low.ndim - 1,), (0,)), ((), ())))  # [..., out...]
    return spec.scale * out


def _kernel_axes(module: nn.DenseGeneral, shape) -> tuple:
    """The logical axis names the projection's kernel initializer gives it (None each when it gives none)."""
    boxed = jax.eval_shape(lambda: module.kernel_init(jax.random.PRNGKey(0), shape, module.param_dtype))
    return tuple(getattr(boxed, "names", (None,) * len(shape)))


def _uniform_fan_in(fan_in: int):
    """PEFT's default lora_A init (kaiming_uniform with a=sqrt(5)): uniform in +-1/sqrt(fan_in)."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def storage_dtype(spec: LoraSpec | None, path, param_dtype) -> jnp.dtype:
    """The dtype a parameter is held in while training: ``spec.base_dtype`` for the base weights when set,
    else ``param_dtype`` (always for the adapters, whose updates need it)."""
    if spec is None or not spec.base_dtype or is_adapter(path):
        return jnp.dtype(param_dtype)
    return jnp.dtype(spec.base_dtype)


def is_adapter(path) -> bool:
    """True for a params-tree key path ending in an adapter leaf."""
    last = path[-1]
    return getattr(last, "key", getattr(last, "name", last)) in ADAPTER_NAMES


def split(params):
    """(base, adapters): two trees of the params' structure, with None where the other has a leaf."""
    base = jax.tree_util.tree_map_with_path(lambda p, x: None if is_adapter(p) else x, params)
    adapters = jax.tree_util.tree_map_with_path(lambda p, x: x if is_adapter(p) else None, params)
    return base, adapters


def combine(base, adapters):
    """Inverse of ``split``."""
    return jax.tree_util.tree_map(lambda b, a: a if b is None else b, base, adapters,
                                  is_leaf=lambda x: x is None)


def insert(params: dict, adapters: dict) -> dict:
    """``params`` (nested dicts, adapters absent or None) with the adapter leaves of ``adapters`` added."""
    out = dict(params)
    for key, value in adapters.items():
        if isinstance(value, dict):
            out[key] = insert(out.get(key, {}), value)
        elif value is not None:
            out[key] = value
    return out


def merge(spec: LoraSpec, params):
    """The params with every adapter folded into its kernel (W + scale * A B) and the adapters removed:
    the plain model, for inference or export."""

    def fold(node):
        if not isinstance(node, dict):
            return node
        node = {k: fold(v) for k, v in node.items()}
        if "lora_a" in node:
            a, b = node.pop("lora_a"), node.pop("lora_b")
            node["kernel"] = (node["kernel"] + spec.scale * adapter_product(a, b, node["kernel"].shape)
                              ).astype(node["kernel"].dtype)
        return node

    return fold(params)


def adapter_product(a, b, kernel_shape):
    """A B shaped as the kernel: a [S.., in..., r], b [S.., r, out...] -> [S.., in..., out...], where S are
    the stacked-layer axes the kernel has too (none, or one for scanned layers)."""
    stacked = a.ndim + b.ndim - len(kernel_shape) - 2
    rank = a.shape[-1]
    a2 = a.reshape(a.shape[:stacked] + (-1, rank))  # [S.., IN, r]
    b2 = b.reshape(b.shape[:stacked] + (rank, -1))  # [S.., r, OUT]
    return jnp.matmul(a2.astype(jnp.float32), b2.astype(jnp.float32)).reshape(kernel_shape)
