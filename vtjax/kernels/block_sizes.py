"""Tile sizes for the flash attention kernels, with defaults per backend.

The forward pass and the dq pass walk query tiles of ``block_q`` rows against
key tiles of ``block_k`` rows; the dk/dv pass walks key tiles of
``block_k_dkv`` rows against query tiles of ``block_q_dkv`` rows.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

Backend = Literal["tpu", "gpu"]
BACKENDS = ("tpu", "gpu")

# Mosaic TPU keeps the key axis of a score tile on the 128 vector lanes.
TPU_LANES = 128
# Triton's tl.dot needs every operand dimension >= 16.
GPU_MIN_BLOCK = 16


@dataclasses.dataclass(frozen=True)
class BlockSizes:
    """Rows per tile for each pass of the kernel. All must be powers of two."""

    block_q: int  # query rows per tile, forward and dq passes
    block_k: int  # key rows per tile, forward and dq passes
    block_q_dkv: int  # query rows per tile, dk/dv pass
    block_k_dkv: int  # key rows per tile, dk/dv pass
    num_warps: int | None = None  # GPU only: warps per program (None: 4 for D <= 64, else 8)
    num_stages: int = 2  # GPU only: software pipelining depth of the key loop

    def __post_init__(self):
        for name in ("block_q", "block_k", "block_q_dkv", "block_k_dkv"):
            value = getattr(self, name)
            if value < 1 or value & (value - 1):
                raise ValueError(f"BlockSizes.{name}={value} must be a power of two")

    @classmethod
    def default(cls, backend: Backend) -> BlockSizes:
        """Defaults that fit the on-chip memory of current parts at head_dim <= 128.

        TPU: 128-aligned tiles (lane width); 512-row tiles amortise the
        per-grid-step overhead of Mosaic. GPU: 128 query rows against 64 key
        rows per step in the forward/dq passes (the FlashAttention-2 Triton
        shape for head_dim 128), 64x64 in the dk/dv pass, whose program keeps
        two f32 [block_k, D] accumulators in registers. Neither set has been
        tuned on hardware yet: scripts/bench_attention.py is the tool for that.
        """
        if backend == "tpu":
            return cls(block_q=512, block_k=512, block_q_dkv=512, block_k_dkv=512)
        if backend == "gpu":
            return cls(block_q=128, block_k=64, block_q_dkv=64, block_k_dkv=64, num_stages=2)
        raise ValueError(f"backend={backend!r} is not one of {BACKENDS}")

    @property
    def seq_multiple(self) -> int:
        """Sequence lengths are padded up to a multiple of this (all blocks are powers of two)."""
        return max(self.block_q, self.block_k, self.block_q_dkv, self.block_k_dkv)

    def fit(self, seq_len: int, min_block: int) -> BlockSizes:
        """Shrinks every block to the next power of two >= seq_len (at least min_block).

        Short sequences (a 17-token prompt) then pad to one small tile instead of
        a 512-row one.
        """
        cap = max(min_block, 1 << max(0, (seq_len - 1).bit_length()))
        return dataclasses.replace(
                self, block_q=min(self.block_q, cap), block_k=min(self.block_k, cap),
                block_q_dkv=min(self.block_q_dkv, cap), block_k_dkv=min(self.block_k_dkv, cap))

    def check_for(self, backend: Backend, interpret: bool) -> None:
        """Rejects tiles the compiled backend cannot lower (interpret mode takes any)."""
        if interpret:
            return
        blocks = (self.block_q, self.block_k, self.block_q_dkv, self.block_k_dkv)
        if backend == "tpu" and any(b % TPU_LANES for b in blocks):
            raise ValueError(
                    f"TPU blocks must be multiples of {TPU_LANES} (the lane width); got {self}")
        if backend == "gpu" and any(b < GPU_MIN_BLOCK for b in blocks):
            raise ValueError(f"GPU blocks must be >= {GPU_MIN_BLOCK} (tl.dot minimum); got {self}")
