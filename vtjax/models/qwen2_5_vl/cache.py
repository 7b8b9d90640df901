"""The decoder's key/value caches and the modes its layers run in.

A prefill returns the prompt's ``KVCache`` (stacked over layers, as its scan
produces it); ``init_cache`` turns it into the ``DecodeCache`` the sampler
carries: per layer, the prompt's keys and values shared by its R samples, and
one generated-token cache per sample row. Decode caches are head-major
(``[rows, Hkv, slots, Dh]``) and held one array per layer, so a decode step
neither transposes nor slices them: it reads each layer's cache where it lies
and writes the new tokens' slots in place.
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
    """Keys and values: a prefill's, stacked over layers, or one decode layer's (head-major)."""

    k: jax.Array  # prefill [layers, B, L, Hkv, Dh]; decode [rows, Hkv, slots, Dh]
    v: jax.Array  # like k


@flax.struct.dataclass
class DecodeCache:
    """Everything cached for decoding N = B * R rows (row ``b * R + r`` is sample r of prompt b)."""

    prompt: tuple[KVCache, ...]  # per layer [B, Hkv, Lp, Dh], shared by the R rows of each prompt
    prompt_mask: jax.Array  # [B, Lp] bool, False at the prompt's (left) padding
    generated: tuple[KVCache, ...]  # per layer [N, Hkv, M, Dh], slot m holds row n's m-th fed-back token

    @property
    def generated_slots(self) -> int:
        """M: the slots each row's generated cache holds now (a sampler may widen it, up to max_new_tokens)."""
        return self.generated[0].k.shape[2]


@flax.struct.dataclass
class DecodeView:
    """What one decode step's T new tokens see and where their keys go (inside a layer)."""

    prompt_mask: jax.Array  # [B, Lp] bool
    generated_visible: jax.Array  # [N, T, M] bool, slots written before this step (the new tokens come apart)
    write_index: jax.Array  # [] or [N] int32, generated-cache slot of the first new token (of each row)


def init_cache(prompt: KVCache, prompt_mask: jax.Array, samples_per_prompt: int, slots: int) -> DecodeCache:
    """A decode cache over a prefill's stacked cache [layers, B, Lp, Hkv, Dh]: the prompt's keys and values
    made head-major per layer (one copy per rollout), and zeroed generated slots for every row."""
    layers, b, _, kv_heads, head_dim = prompt.k.shape
    shape = (b * samples_per_prompt, kv_heads, slots, head_dim)
    head_major = [KVCache(k=prompt.k[i].transpose(0, 2, 1, 3), v=prompt.v[i].transpose(0, 2, 1, 3))
                  for i in range(layers)]
    generated = [KVCache(k=jnp.zeros(shape, prompt.k.dtype), v=jnp.zeros(shape, prompt.v.dtype))
                 for _ in range(layers)]
    return DecodeCache(prompt=tuple(head_major), prompt_mask=prompt_mask.astype(bool), generated=tuple(generated))


def widen_generated(generated: tuple[KVCache, ...], slots: int) -> tuple[KVCache, ...]:
    """Per layer generated caches [N, Hkv, M, Dh] with zeroed slots appended up to ``slots`` (one copy): a
    sampler grows them as its rows advance, so that early steps read only the slots they can reach."""
    def widen(x):  # [N, Hkv, M, Dh] -> [N, Hkv, slots, Dh]
        if slots < x.shape[2]:
            raise ValueError(f"cannot narrow a generated cache of {x.shape[2]} slots to {slots}")
        return jnp.pad(x, ((0, 0), (0, 0), (0, slots - x.shape[2]), (0, 0)))

    return tuple(KVCache(k=widen(kv.k), v=widen(kv.v)) for kv in generated)


def decode_view(cache: DecodeCache, write_index: jax.Array, new_tokens: int) -> DecodeView:
    """The view of ``new_tokens`` tokens to be written from slot ``write_index`` (one for all rows, or [N] one
    per row): each sees its row's slots before it (and, inside the attention, the new tokens up to itself)."""
    rows = cache.generated[0].k.shape[0]
    write_index = jnp.asarray(write_index, jnp.int32)
    slots = jnp.arange(cache.generated_slots)  # [M]
    visible = slots[None, None, :] < write_index.reshape(-1, 1, 1)  # [1 or N, 1, M]
    return DecodeView(prompt_mask=cache.prompt_mask,
                      generated_visible=jnp.broadcast_to(visible, (rows, new_tokens, cache.generated_slots)),
                      write_index=write_index)
