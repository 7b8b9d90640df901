"""The decoder's key/value caches and the modes its layers run in.

A prefill returns the prompt's ``KVCache``; ``init_cache`` wraps it into the
``DecodeCache`` the sampler carries: the prompt's keys and values shared by its
R samples, and one generated-token cache per sample row.
"""

from __future__ import annotations

import enum

import flax.struct
import jax
import jax.numpy as jnp


class LayerMode(enum.Enum):
    """What a decoder layer computes."""

    TRAIN = "train"  # the whole sequence, causal + segment attention, no cache
    PREFILL = "prefill"  # as TRAIN over the prompt, also returning its keys and values
    DECODE = "decode"  # new tokens against the cached prompt and the row's generated tokens


@flax.struct.dataclass
class KVCache:
    """Keys and values, stacked over layers (a single layer's when scanned)."""

    k: jax.Array  # [layers, B, L, Hkv, Dh]
    v: jax.Array  # [layers, B, L, Hkv, Dh]


@flax.struct.dataclass
class DecodeCache:
    """Everything cached for decoding N = B * R rows (row ``b * R + r`` is sample r of prompt b)."""

    prompt: KVCache  # [layers, B, Lp, Hkv, Dh], shared by the R rows of each prompt
    prompt_mask: jax.Array  # [B, Lp] bool, False at the prompt's (left) padding
    generated: KVCache  # [layers, N, M, Hkv, Dh], slot m holds row n's m-th fed-back token

    @property
    def samples_per_prompt(self) -> int:
        return self.generated.k.shape[1] // self.prompt.k.shape[1]

    @property
    def max_new_tokens(self) -> int:
        return self.generated.k.shape[2]


@flax.struct.dataclass
class DecodeView:
    """What one decode step's T new tokens see and where their keys go (inside a layer)."""

    prompt_mask: jax.Array  # [B, Lp] bool
    generated_visible: jax.Array  # [N, T, M] bool, the new tokens' own slots included
    write_index: jax.Array  # [] int32, generated-cache slot of the first new token


def init_cache(prompt: KVCache, prompt_mask: jax.Array, samples_per_prompt: int, max_new_tokens: int) -> DecodeCache:
    """A decode cache over a prefilled prompt cache, with empty (zero) generated slots for every row."""
    layers, b, _, kv_heads, head_dim = prompt.k.shape
    shape = (layers, b * samples_per_prompt, max_new_tokens, kv_heads, head_dim)
    generated = KVCache(k=jnp.zeros(shape, prompt.k.dtype), v=jnp.zeros(shape, prompt.v.dtype))
    return DecodeCache(prompt=prompt, prompt_mask=prompt_mask.astype(bool), generated=generated)


def decode_view(cache: DecodeCache, write_index: jax.Array, new_tokens: int) -> DecodeView:
    """The view of ``new_tokens`` tokens written from slot ``write_index``: token t sees slots <= index + t."""
    rows = cache.generated.k.shape[1]
    slots = jnp.arange(cache.max_new_tokens)  # [M]
    visible = slots[None, :] <= write_index + jnp.arange(new_tokens)[:, None]  # [T, M]
    return DecodeView(prompt_mask=cache.prompt_mask,
                      generated_visible=jnp.broadcast_to(visible[None], (rows, new_tokens, cache.max_new_tokens)),
                      write_index=jnp.asarray(write_index, jnp.int32))
