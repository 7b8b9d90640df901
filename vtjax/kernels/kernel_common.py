"""Pieces shared by the TPU and GPU flash attention kernels.

``KernelConfig`` carries every static choice of one call (hashable, so it can
be a ``custom_vjp`` non-differentiable argument); ``KernelInputs`` carries the
integer arrays that steer the kernels (segment ids, tile visit ranges).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from vtjax.kernels.block_sizes import BlockSizes
from vtjax.kernels.tiles import VisitRanges

# Finite stand-in for -inf in masked logits: exp(MASK_VALUE - m) is 0 and
# (MASK_VALUE - MASK_VALUE) is 0, never NaN.
MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)
# Log-sum-exp stored for a query row that sees no key: large, so that
# exp(s - lse) underflows to 0 in the backward pass even before masking.
EMPTY_ROW_LSE = -MASK_VALUE

# Branch ids travel packed with the segment ids, one int32 per token: segment * BRANCH_SPAN + branch.
BRANCH_BITS = 16
BRANCH_SPAN = 1 << BRANCH_BITS

# lax.dot_general dimension numbers for 2-D tiles.
NT = (((1,), (1,)), ((), ()))  # x @ y.T
NN = (((1,), (0,)), ((), ()))  # x @ y


@dataclasses.dataclass(frozen=True)
class KernelConfig:
    """Static description of one flash attention call (after padding)."""

    backend: str  # "tpu" (Mosaic) or "gpu" (Triton)
    interpret: bool  # run the kernels in the Pallas interpreter (CPU tests)
    causal: bool
    scale: float  # logit scale, usually head_dim ** -0.5
    blocks: BlockSizes
    head_dim: int
    seq_len: int  # padded length, a multiple of every block
    num_q_heads: int
    num_kv_heads: int
    segmented: bool  # segment ids are passed to the kernels (padding or user ids)
    branched: bool  # the segment ids carry branch ids too (prefix sharing; ``pack_branches``)
    kv_steps: int  # inner grid extent (TPU) of the forward / dq passes
    q_steps: int  # inner grid extent (TPU) of the dk/dv pass, per query head of a group

    @property
    def group(self) -> int:
        """Query heads sharing one kv head (GQA ratio)."""
        return self.num_q_heads // self.num_kv_heads

    @property
    def masked(self) -> bool:
        """Whether any score can be masked, i.e. the kernels need per-element masks."""
        return self.causal or self.segmented


class KernelInputs(NamedTuple):
    """Integer side inputs; they receive no gradient."""

    segment_ids: jax.Array | None  # [B, Lp] int32, 0 = padding (packed with branches when branched);
    #                                None when not segmented
    kv_ranges: VisitRanges  # per query tile of block_q: key tiles of block_k to visit
    q_ranges: VisitRanges  # per key tile of block_k_dkv: query tiles of block_q_dkv to visit


def pack_branches(segment_ids: jax.Array, branch_ids: jax.Array) -> jax.Array:
    """[B, L] int32 ``segment * BRANCH_SPAN + branch`` (padding stays 0)."""
    seg = segment_ids.astype(jnp.int32)
    return jnp.where(seg != 0, seg * BRANCH_SPAN + branch_ids.astype(jnp.int32), 0)


def tile_visibility(q_pos, k_pos, q_seg, k_seg, causal: bool, branched: bool = False):
    """Boolean visibility of a score tile, or None when nothing is masked.

    All arguments broadcast to the tile shape [rows, cols]: ``q_pos``/``q_seg``
    vary along rows, ``k_pos``/``k_seg`` along columns; segments are None
    when the call is not segmented. Query i sees key j iff both carry the
    same non-zero segment id and, if causal, j <= i; when ``branched`` the ids
    are packed (``pack_branches``) and the key must also be shared (branch 0)
    or in the query's branch.
    """
    mask = None
    if q_seg is not None and branched:
        q_group, k_group = jnp.right_shift(q_seg, BRANCH_BITS), jnp.right_shift(k_seg, BRANCH_BITS)
        k_branch = jnp.bitwise_and(k_seg, BRANCH_SPAN - 1)
        mask = ((q_group == k_group) & (q_seg != 0)
                & ((k_branch == 0) | (k_branch == jnp.bitwise_and(q_seg, BRANCH_SPAN - 1))))
    elif q_seg is not None:
        mask = (q_seg == k_seg) & (q_seg != 0)
    if causal:
        below = k_pos <= q_pos
        mask = below if mask is None else mask & below
    return mask
