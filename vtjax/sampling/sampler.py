"""The compiled sampler: prefill once per prompt, share the cache across the group, while_loop decode.

One call of ``generate`` runs two compiled programs:

1. ``prefill``: vision tower + prompt through the decoder, once per prompt,
   returning the prompt KV cache ``[layers, B, Lp, Hkv, Dh]``;
2. ``decode``: a ``lax.while_loop`` (carry: ``DecodeState``) produces one token
   per step for all N = B * G rows until every row has emitted an EOS or
   ``max_new_tokens`` is reached. The model's ``init_cache`` makes the
   ``DecodeCache``: the G samples of a prompt *share* its prompt cache (never
   copied); each row only owns a cache of its generated tokens (per layer
   ``[N, Hkv, M, Dh]``), allocated inside the program, updated in place. The
   loop runs the decoder layer by layer on per-layer weights (unstacked once
   per call), so no step copies a slice of a stacked weight or cache.

Prompts are left-padded on the host to a bucketed length, so every row's
prompt ends at the same position and decode positions follow the rope-delta
rule of ``get_rope_index``. Both programs compile once per (batch, prompt
bucket, max_new_tokens, sampling settings).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from vtjax.models.qwen2_5_vl import (KVCache, ModelInputs, Qwen25VL, Qwen25VLConfig, bucket_size,
                                     decode_position_ids, get_rope_index, init_cache, prepare_inputs,
                                     unstack_layers)
from vtjax.models.qwen2_5_vl.inputs import MIN_TEXT_BUCKET
from vtjax.sampling.filters import choose_tokens
from vtjax.sharding import BATCH_AXES


@dataclasses.dataclass(frozen=True)
class SamplingSettings:
    """Static settings of one compiled decode program."""

    max_new_tokens: int  # decode steps at most
    num_samples: int  # G completions per prompt
    temperature: float  # 0 = greedy
    top_k: int  # 0 = off
    top_p: float  # 1.0 = off
    eos_token_ids: tuple[int, ...]  # any of these ends a row
    pad_token_id: int  # written after a row has ended


def left_pad(input_ids, attention_mask, length: int, pad_id: int):
    """Moves every row's real tokens to the right end of a [B, length] array."""
    input_ids, attention_mask = np.asarray(input_ids), np.asarray(attention_mask).astype(bool)
    ids = np.full((input_ids.shape[0], length), pad_id, np.int64)
    mask = np.zeros((input_ids.shape[0], length), np.int64)
    for row, (tokens, keep) in enumerate(zip(input_ids, attention_mask, strict=True)):
        real = tokens[keep]
        ids[row, length - len(real):] = real
        mask[row, length - len(real):] = 1
    return ids, mask


def sampling_settings(config: Qwen25VLConfig, *, max_new_tokens: int, num_samples: int = 1,
                      temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0,
                      eos_token_ids=None) -> SamplingSettings:
    """Checked settings; EOS defaults to the model's, padding to its pad id (else the first EOS)."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be at least 1")
    if num_samples < 1:
        raise ValueError(f"num_samples={num_samples} must be at least 1")
    if temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
        raise ValueError(f"bad sampling settings: temperature={temperature}, top_p={top_p}, top_k={top_k}")
    if eos_token_ids is None:
        eos_token_ids = () if config.eos_token_id is None else (config.eos_token_id,)
    eos_token_ids = tuple(int(t) for t in np.atleast_1d(eos_token_ids))
    pad_id = config.pad_token_id if config.pad_token_id is not None else (eos_token_ids or (0,))[0]
    return SamplingSettings(max_new_tokens, num_samples, float(temperature), int(top_k), float(top_p),
                            eos_token_ids, int(pad_id))


def generate(
    config: Qwen25VLConfig,
    params,
    *,
    input_ids,
    attention_mask=None,
    pixel_values=None,
    image_grid_thw=None,
    pixel_values_videos=None,
    video_grid_thw=None,
    second_per_grid_ts=None,
    max_new_tokens: int,
    num_samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    eos_token_ids=None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Samples ``num_samples`` completions per prompt.

    Inputs are numpy arrays as the HF processor lays them out (any padding side).
    Returns numpy ``tokens`` [B*G, max_new_tokens] (``pad_token_id`` after a row's
    EOS), ``lengths`` [B*G] (tokens up to and including the EOS) and ``logprobs``
    [B*G, max_new_tokens] float32 (the policy's log-probability of each sampled
    token at temperature 1, 0 after the end). Rows b*G .. b*G+G-1 belong to prompt b.
    """
    settings = sampling_settings(config, max_new_tokens=max_new_tokens, num_samples=num_samples,
                                 temperature=temperature, top_p=top_p, top_k=top_k, eos_token_ids=eos_token_ids)
    vision = dict(pixel_values=pixel_values, image_grid_thw=image_grid_thw,
                  pixel_values_videos=pixel_values_videos, video_grid_thw=video_grid_thw,
                  second_per_grid_ts=second_per_grid_ts)
    prompts = prompt_batch(config, input_ids, attention_mask, settings.pad_token_id, **vision)
    out = sample(config, params, prompts, settings, seed)
    return {k: np.asarray(v) for k, v in out.items()}


@flax.struct.dataclass
class PromptBatch:
    """Left-padded prompts ready for ``sample`` (numpy on the host, or global device arrays)."""

    inputs: ModelInputs  # [B, Lp] prompts, every row ending at Lp - 1 (segment_ids: the prompt mask)
    deltas: jax.Array  # [B] int32 rope delta of each prompt (decode positions = Lp + step + delta)


def prompt_batch(config: Qwen25VLConfig, input_ids, attention_mask, pad_id: int, *, pad_length: int | None = None,
                 pad_patches: int | None = None, **vision) -> PromptBatch:
    """Host arrays of B prompts (HF processor layout, any padding side), left-padded to a bucket.

    ``vision``: pixel_values, image_grid_thw, pixel_values_videos, video_grid_thw, second_per_grid_ts.
    """
    input_ids = np.asarray(input_ids)
    if attention_mask is None:
        attention_mask = np.ones_like(input_ids)
    prompt_len = bucket_size(input_ids.shape[1], MIN_TEXT_BUCKET) if pad_length is None else pad_length
    ids, mask = left_pad(input_ids, attention_mask, prompt_len, pad_id)
    inputs = prepare_inputs(config, input_ids=ids, attention_mask=mask, pad_length=prompt_len,
                            pad_patches=pad_patches, **vision)
    _, deltas = get_rope_index(config, ids, mask, vision.get("image_grid_thw"), vision.get("video_grid_thw"),
                               vision.get("second_per_grid_ts"))
    return PromptBatch(inputs=inputs, deltas=np.asarray(deltas, np.int32).reshape(-1))


def sample(config: Qwen25VLConfig, params, prompts: PromptBatch, settings: SamplingSettings, seed: int, *,
           features: jax.Array | None = None, rows: NamedSharding | None = None,
           timings: dict | None = None) -> dict[str, jax.Array]:
    """Runs prefill and decode; returns device arrays ``tokens``, ``lengths``, ``logprobs`` (see ``generate``).

    Args:
      features: [Mp, E] the prompts' vision features, already encoded (the tower is then skipped).
      rows: the sharding of the N = B * G sample rows inside decode (e.g. over the batch axes of a
        training mesh); the outputs are then replicated on that mesh. None: let the compiler choose.
      timings: when given, the call waits for each program and adds ``prefill_s`` and ``decode_s`` to it.
    Sample n's key is fold_in(PRNGKey(seed), n): the draws depend on the global row, not on the layout.
    """
    inputs = prompts.inputs if features is None else prompts.inputs.replace(vision=None)
    start = time.perf_counter()
    hidden, prompt_cache = _prefill_fn(config, rows)(params, inputs, features)
    if timings is not None:
        jax.block_until_ready(prompt_cache)
        timings["prefill_s"] = time.perf_counter() - start
        start = time.perf_counter()
    with jax.transfer_guard("allow"):  # the seed: an intended copy (trainers disallow the others)
        key = jax.random.PRNGKey(seed)
        if rows is not None:
            key = jax.device_put(key, NamedSharding(rows.mesh, PartitionSpec()))
    tokens, lengths, logprobs = _decode_fn(config, settings, rows)(
        params, hidden, prompt_cache, prompts.inputs.segment_ids, prompts.deltas, key)
    if timings is not None:
        jax.block_until_ready(tokens)
        timings["decode_s"] = time.perf_counter() - start
    return {"tokens": tokens, "lengths": lengths, "logprobs": logprobs}


def programs(config: Qwen25VLConfig, settings: SamplingSettings, rows: NamedSharding | None = None):
    """The sampler's jitted (prefill, decode) programs, e.g. to compile them ahead of time (``train.aot_grpo``).

    prefill: (params, prompt inputs, features | None) -> (hidden [B, E], prompt cache);
    decode: (params, hidden, prompt cache, prompt mask [B, Lp], deltas [B], key) -> (tokens, lengths, logprobs).
    """
    return _prefill_fn(config, rows), _decode_fn(config, settings, rows)


@functools.lru_cache(maxsize=None)
def _prefill_fn(config: Qwen25VLConfig, rows: NamedSharding | None):
    model = Qwen25VL(config)

    def prefill(params, inputs, features):
        hidden, cache = model.apply({"params": params}, inputs, features, method=Qwen25VL.prefill)
        if rows is not None:  # [B, E] is small: whole on every device, ready to fan out to the G sample rows
            hidden = jax.lax.with_sharding_constraint(hidden, NamedSharding(rows.mesh, PartitionSpec()))
        return hidden, cache

    return jax.jit(prefill)


@flax.struct.dataclass
class DecodeState:
    """The carry of the decode loop over N = B * R rows and M = max_new_tokens slots."""

    step: jax.Array  # [] int32, index of the token chosen in this iteration
    tokens: jax.Array  # [N, M] int32, chosen tokens (pad after a row's end)
    logprobs: jax.Array  # [N, M] float32, their log-probabilities (0 after a row's end)
    done: jax.Array  # [N] bool, the row has emitted an EOS
    lengths: jax.Array  # [N] int32, tokens up to and including the EOS (M while running)
    last: jax.Array  # [N] int32, the token fed back next
    generated: tuple[KVCache, ...]  # per layer [N, Hkv, M, Dh], the rows' generated-token caches


@functools.lru_cache(maxsize=None)
def _decode_fn(config: Qwen25VLConfig, s: SamplingSettings, rows: NamedSharding | None):
    model = Qwen25VL(config.replace(scan_layers=False))  # decode runs layer by layer (Qwen25VL.decode_step)

    def constrain(x, axis: int = 0):  # a row-indexed array [.., N, ..]: rows over `rows`' axes where they divide
        if rows is None or x.shape[axis] % math.prod(rows.mesh.shape[a] for a in BATCH_AXES):
            return x
        spec = [None] * x.ndim
        spec[axis] = BATCH_AXES
        return jax.lax.with_sharding_constraint(x, NamedSharding(rows.mesh, PartitionSpec(*spec)))

    def constrain_cache(generated: tuple[KVCache, ...]) -> tuple[KVCache, ...]:  # per layer [N, Hkv, M, Dh]
        return tuple(KVCache(k=constrain(kv.k), v=constrain(kv.v)) for kv in generated)

    def logits_of(params, hidden):  # [N, E] -> [N, V] float32
        return model.apply({"params": params}, hidden, method=Qwen25VL.logits).astype(jnp.float32)

    def decode(params, hidden, prompt_cache: KVCache, prompt_mask, deltas, rng):
        params = unstack_layers(config, params)  # once per rollout: each layer's weights a separate array
        r = s.num_samples
        b, prompt_len = prompt_mask.shape
        n = b * r  # row b * R + j is sample j of prompt b
        cache = init_cache(prompt_cache, prompt_mask, r, s.max_new_tokens)
        cache = cache.replace(generated=constrain_cache(cache.generated))
        deltas = jnp.repeat(deltas, r, axis=0)  # [N]
        keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(jnp.arange(n))  # one key per sample
        eos = jnp.asarray(s.eos_token_ids or (-1,), jnp.int32)

        def pick(logits, step):
            step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, step)
            return choose_tokens(logits, step_keys, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p)

        first, first_lp = pick(logits_of(params, jnp.repeat(hidden, r, axis=0)), 0)
        done = jnp.isin(first, eos)
        start = DecodeState(
            step=jnp.int32(1),
            tokens=constrain(jnp.full((n, s.max_new_tokens), s.pad_token_id, jnp.int32).at[:, 0].set(first)),
            logprobs=constrain(jnp.zeros((n, s.max_new_tokens), jnp.float32).at[:, 0].set(first_lp)),
            done=done, lengths=jnp.where(done, 1, s.max_new_tokens), last=first, generated=cache.generated)

        def cond(state: DecodeState):
            return (state.step < s.max_new_tokens) & ~jnp.all(state.done)

        def body(state: DecodeState) -> DecodeState:
            write = state.step - 1  # generated-cache slot of the token fed in now
            positions = decode_position_ids(deltas, prompt_len, 1, start=write)  # [3, N, 1]
            hidden, stepped = model.apply({"params": params}, state.last[:, None], positions,
                                          cache.replace(generated=state.generated), write,
                                          method=Qwen25VL.decode_step)
            token, lp = pick(logits_of(params, hidden[:, 0]), state.step)
            token = jnp.where(state.done, s.pad_token_id, token)
            lp = jnp.where(state.done, 0.0, lp)
            finished = ~state.done & jnp.isin(token, eos)
            return DecodeState(
                step=state.step + 1, tokens=state.tokens.at[:, state.step].set(token),
                logprobs=state.logprobs.at[:, state.step].set(lp), done=state.done | finished,
                lengths=jnp.where(finished, state.step + 1, state.lengths), last=token,
                generated=constrain_cache(stepped.generated))

        end = jax.lax.while_loop(cond, body, start)
        return end.tokens, end.lengths, end.logprobs

    if rows is None:
        return jax.jit(decode)
    replicated = NamedSharding(rows.mesh, PartitionSpec())
    return jax.jit(decode, out_shardings=(replicated, replicated, replicated))
