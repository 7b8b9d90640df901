"""The compiled sampler: prefill once per prompt, share the cache across the group, while_loop decode.

One call of ``generate`` runs two compiled programs:

1. ``prefill``: vision tower + prompt through the decoder, once per prompt,
   returning the prompt KV cache ``[layers, B, Lp, Hkv, Dh]``;
2. ``decode``: a ``lax.while_loop`` (carry: ``DecodeState``) produces one token
   per step for each of N = B * R rows (R rows per prompt, R <= G samples)
   until every sample has emitted an EOS or ``max_new_tokens`` tokens. With
   R < G the loop batches continuously: a row whose sample ends takes its
   prompt's next pending sample, so rows stop idling behind the longest
   completion; with ``compact_rows`` the loop instead goes on with the live rows
   gathered into fewer as samples end (``row_levels``). The model's ``init_cache`` makes the
   ``DecodeCache``: the samples of a prompt *share* its prompt cache (never
   copied); each row only owns a cache of its generated tokens (per layer
   ``[N, Hkv, M, Dh]``), allocated inside the program, updated in place, and
   grown with the steps (``cache_widths``: early steps read fewer slots). The
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
                                     unstack_layers, widen_generated)
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
    rows_per_prompt: int  # R decode rows per prompt, 1..G; R < G: a row whose sample ends takes the next one
    cache_growth: int = 0  # generated-cache slots added per decode phase (``cache_widths``); 0: automatic
    compact_rows: bool = False  # gather the live rows into fewer as samples end (``row_levels``)


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
                      eos_token_ids=None, rows_per_prompt: int = 0, cache_growth: int = 0,
                      compact_rows: bool = False) -> SamplingSettings:
    """Checked settings; EOS defaults to the model's, padding to its pad id (else the first EOS).

    rows_per_prompt: decode rows per prompt (0 = num_samples, every sample decodes at once). Fewer rows
    than samples refill a row with the prompt's next sample when its own ends, so rows stop idling behind
    the longest completion; every sample's tokens and log-probs stay those of the one-row-per-sample loop.
    cache_growth: see ``cache_widths`` (it changes the cost and the compile time, not the result).
    compact_rows: once every prompt's samples are handed out and rows end, the loop goes on with the live
    rows gathered into fewer (``row_levels``), so finished rows stop costing; same result, one compiled
    loop body per (cache width, row level).
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be at least 1")
    if num_samples < 1:
        raise ValueError(f"num_samples={num_samples} must be at least 1")
    if not 0 <= rows_per_prompt <= num_samples:
        raise ValueError(f"rows_per_prompt={rows_per_prompt} must be in 1..num_samples={num_samples} (0 = all)")
    if cache_growth < 0:
        raise ValueError(f"cache_growth={cache_growth} must be at least 1 (0 = automatic)")
    if temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
        raise ValueError(f"bad sampling settings: temperature={temperature}, top_p={top_p}, top_k={top_k}")
    if eos_token_ids is None:
        eos_token_ids = () if config.eos_token_id is None else (config.eos_token_id,)
    eos_token_ids = tuple(int(t) for t in np.atleast_1d(eos_token_ids))
    pad_id = config.pad_token_id if config.pad_token_id is not None else (eos_token_ids or (0,))[0]
    return SamplingSettings(max_new_tokens, num_samples, float(temperature), int(top_k), float(top_p),
                            eos_token_ids, int(pad_id), int(rows_per_prompt or num_samples), int(cache_growth),
                            bool(compact_rows))


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
    rows_per_prompt: int = 0,
    cache_growth: int = 0,
    compact_rows: bool = False,
) -> dict[str, np.ndarray]:
    """Samples ``num_samples`` completions per prompt.

    Inputs are numpy arrays as the HF processor lays them out (any padding side).
    Returns numpy ``tokens`` [B*G, max_new_tokens] (``pad_token_id`` after a row's
    EOS), ``lengths`` [B*G] (tokens up to and including the EOS) and ``logprobs``
    [B*G, max_new_tokens] float32 (the policy's log-probability of each sampled
    token at temperature 1, 0 after the end). Rows b*G .. b*G+G-1 belong to prompt b. ``rows_per_prompt``,
    ``cache_growth``, ``compact_rows``: see ``sampling_settings`` (they change the cost, not the result).
    """
    settings = sampling_settings(config, max_new_tokens=max_new_tokens, num_samples=num_samples,
                                 temperature=temperature, top_p=top_p, top_k=top_k, eos_token_ids=eos_token_ids,
                                 rows_per_prompt=rows_per_prompt, cache_growth=cache_growth,
                                 compact_rows=compact_rows)
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
    """Runs prefill and decode; returns device arrays ``tokens``, ``lengths``, ``logprobs`` (see ``generate``),
    ``decode_iterations`` ([] int32, decode loop iterations) and ``decode_row_steps`` ([] int32, the rows those
    iterations computed: ``B * rows_per_prompt`` each, fewer once compacted).

    Args:
      features: [Mp, E] the prompts' vision features, already encoded (the tower is then skipped).
      rows: the sharding of the N = B * R decode rows (e.g. over the batch axes of a
        training mesh); the outputs are then replicated on that mesh. None: let the compiler choose.
      timings: when given, the call waits for each program and adds ``prefill_s`` and ``decode_s`` to it.
    Sample n's key is fold_in(PRNGKey(seed), n), its token t's fold_in(that, t): the draws depend on the
    global sample, not on the layout or on the row that decodes it.
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
    tokens, lengths, logprobs, iterations, row_steps = _decode_fn(config, settings, rows)(
        params, hidden, prompt_cache, prompts.inputs.segment_ids, prompts.deltas, key)
    if timings is not None:
        jax.block_until_ready(tokens)
        timings["decode_s"] = time.perf_counter() - start
    return {"tokens": tokens, "lengths": lengths, "logprobs": logprobs, "decode_iterations": iterations,
            "decode_row_steps": row_steps}


def programs(config: Qwen25VLConfig, settings: SamplingSettings, rows: NamedSharding | None = None):
    """The sampler's jitted (prefill, decode) programs, e.g. to compile them ahead of time (``train.aot_grpo``).

    prefill: (params, prompt inputs, features | None) -> (hidden [B, E], prompt cache);
    decode: (params, hidden, prompt cache, prompt mask [B, Lp], deltas [B], key)
      -> (tokens, lengths, logprobs, loop iterations, row-steps).
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
    """The carry of the decode loop: N = B * R rows decode the B * G samples (R <= G rows per prompt; a row
    whose sample ends takes its prompt's next pending sample), each sample into M = max_new_tokens slots."""

    iterations: jax.Array  # [] int32, loop iterations run so far
    row_steps: jax.Array  # [] int32, rows computed over those iterations (N each, fewer once compacted)
    sample: jax.Array  # [N] int32, the sample each row decodes (B * G: none left, the row idles)
    step: jax.Array  # [N] int32, index within its sample of the token each row chooses now
    last: jax.Array  # [N] int32, the token each row feeds back now
    started: jax.Array  # [B] int32, samples of each prompt handed to rows so far
    tokens: jax.Array  # [B * G, M] int32, chosen tokens (pad after a sample's end)
    logprobs: jax.Array  # [B * G, M] float32, their log-probabilities (0 after a sample's end)
    lengths: jax.Array  # [B * G] int32, tokens up to and including the EOS (M while running)
    generated: tuple[KVCache, ...]  # per layer [N, Hkv, M, Dh], each row's current sample's cache


# XLA:CPU's default copy insertion copies every layer's generated cache twice per decode step (the loop
# carries it, the attention reads it, then it is updated in place); its region analysis proves the read comes
# first and keeps none of those copies (24 MB a step at 16 rows of the benchmark's 6 layers).
_CPU_DECODE_OPTIONS = {"xla_cpu_copy_insertion_use_region_analysis": True}


# Automatic growth: the generated caches start at M / 4 slots and grow by as much every M / 4 steps (at least
# 32 slots a time): steps read 5/8 of the M slots on average, for at most 4 compiled loop bodies.
CACHE_GROWTHS = 4
MIN_CACHE_GROWTH = 32


def cache_widths(max_new_tokens: int, growth: int = 0) -> tuple[int, ...]:
    """Generated-cache widths of the decode loop's phases (the last is ``max_new_tokens``): the caches grow
    by ``growth`` slots a phase (0: automatic, see above); a last phase that would add fewer than
    ``growth / 2`` slots is merged into the one before it, e.g. (32, 64, 100) for 100 tokens."""
    if growth == 0:
        growth = max(MIN_CACHE_GROWTH, -(-max_new_tokens // CACHE_GROWTHS))
    return tuple(w for w in range(growth, max_new_tokens, growth) if 2 * (max_new_tokens - w) >= growth) + (
        max_new_tokens,)


def row_levels(rows_per_prompt: int) -> tuple[int, ...]:
    """Rows per prompt the loop may compact to, descending: R, 3R/4, then halvings down to 1 (rounded up),
    e.g. (8, 6, 4, 2, 1). A compacted phase runs at the smallest level that holds every prompt's live rows."""
    levels = {rows_per_prompt, -(-3 * rows_per_prompt // 4)}
    level = rows_per_prompt
    while level > 1:
        level = -(-level // 2)
        levels.add(level)
    return tuple(sorted(levels, reverse=True))


@functools.lru_cache(maxsize=None)
def _decode_fn(config: Qwen25VLConfig, s: SamplingSettings, rows: NamedSharding | None):
    model = Qwen25VL(config.replace(scan_layers=False))  # decode runs layer by layer (Qwen25VL.decode_step)
    g, r, m = s.num_samples, s.rows_per_prompt, s.max_new_tokens

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
        b, prompt_len = prompt_mask.shape
        n, total = b * r, b * g  # row b * R + j decodes samples of prompt b; sample b * G + i is prompt b's i-th
        widths = cache_widths(m, s.cache_growth)
        cache = init_cache(prompt_cache, prompt_mask, r, widths[0])
        cache = cache.replace(generated=constrain_cache(cache.generated))
        keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(jnp.arange(total))  # one key per sample
        eos = jnp.asarray(s.eos_token_ids or (-1,), jnp.int32)

        def pick(logits, samples, steps):  # [X, V], [X], [X]: token `steps` of `samples`
            step_keys = jax.vmap(jax.random.fold_in)(keys[jnp.minimum(samples, total - 1)], steps)
            return choose_tokens(logits, step_keys, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p)

        # Every sample's first token comes from its prompt's last hidden state, before any row decodes.
        first, first_lp = pick(logits_of(params, jnp.repeat(hidden, g, axis=0)), jnp.arange(total),
                               jnp.zeros(total, jnp.int32))  # [B * G]
        first_eos = jnp.isin(first, eos)
        pending = (~first_eos).reshape(b, g) & (m > 1)  # [B, G] samples that need decoding
        order = jnp.argsort(~pending, axis=1, stable=True)  # [B, G] each prompt's pending samples first, in order
        pending_count = pending.sum(axis=1)  # [B]

        def live_rows(state: DecodeState) -> jax.Array:  # [B] rows of each prompt decoding a sample now
            return (state.sample < total).reshape(b, -1).sum(axis=1)

        def assign(state: DecodeState, free: jax.Array) -> DecodeState:
            """Hands each free row [N'] its prompt's next pending sample (none when all are handed out)."""
            rows_now = free.shape[0] // b
            free = free.reshape(b, rows_now)
            take_index = state.started[:, None] + jnp.cumsum(free, axis=1) - 1  # [B, R']
            takes = free & (take_index < pending_count[:, None])
            chosen = jnp.take_along_axis(order, jnp.minimum(take_index, g - 1), axis=1)  # [B, R']
            chosen = (jnp.arange(b)[:, None] * g + chosen).reshape(-1)
            takes, free = takes.reshape(-1), free.reshape(-1)
            return state.replace(
                sample=jnp.where(takes, chosen, jnp.where(free, total, state.sample)),
                step=jnp.where(takes, 1, state.step), last=jnp.where(takes, first[chosen], state.last),
                started=jnp.minimum(state.started + free.reshape(b, rows_now).sum(axis=1), pending_count))

        start = DecodeState(
            iterations=jnp.int32(0), row_steps=jnp.int32(0), sample=jnp.full(n, total, jnp.int32),
            step=jnp.ones(n, jnp.int32), last=jnp.zeros(n, jnp.int32), started=jnp.zeros(b, jnp.int32),
            tokens=constrain(jnp.full((total, m), s.pad_token_id, jnp.int32).at[:, 0].set(first)),
            logprobs=constrain(jnp.zeros((total, m), jnp.float32).at[:, 0].set(first_lp)),
            lengths=jnp.where(first_eos, 1, m).astype(jnp.int32), generated=cache.generated)
        start = assign(start, jnp.ones(n, bool))

        def cond(state: DecodeState):
            return jnp.any(state.sample < total)

        def body(state: DecodeState) -> DecodeState:  # any N' = B * R' rows (R' = R, or fewer once compacted)
            rows_now = state.sample.shape[0]
            active = state.sample < total  # [N']
            write = state.step - 1  # [N'] generated-cache slot of the token fed in now
            # With R == G no row is ever refilled: the active rows move in lockstep and one slot serves all.
            write_index = state.iterations if r == g else write
            positions = decode_position_ids(jnp.repeat(deltas, rows_now // b, axis=0), prompt_len, 1,
                                            start=write)  # [3, N', 1]
            hidden, stepped = model.apply({"params": params}, state.last[:, None], positions,
                                          cache.replace(generated=state.generated), write_index,
                                          method=Qwen25VL.decode_step)
            token, lp = pick(logits_of(params, hidden[:, 0]), state.sample, state.step)
            stops = active & jnp.isin(token, eos)
            target = jnp.where(active, state.sample, total)  # idle rows write nowhere
            stepped_state = state.replace(
                iterations=state.iterations + 1, row_steps=state.row_steps + rows_now, step=state.step + 1,
                last=token, tokens=state.tokens.at[target, state.step].set(token, mode="drop"),
                logprobs=state.logprobs.at[target, state.step].set(lp, mode="drop"),
                lengths=state.lengths.at[jnp.where(stops, state.sample, total)].set(state.step + 1, mode="drop"),
                generated=constrain_cache(stepped.generated))
            return assign(stepped_state, ~active | stops | (state.step + 1 >= m))

        if s.compact_rows:
            state = compacting_loop(start, widths, live_rows, cond, body)
        else:
            # The generated caches grow with the steps: while the loop has run fewer than `width` iterations no
            # row has written beyond slot `width` - 1 (a row's write slot is at most the iterations run), so
            # those steps read `width` slots, not M. One loop per width; between them the caches widen (a copy).
            state = start
            for phase, width in enumerate(widths):
                if phase:
                    state = state.replace(generated=constrain_cache(widen_generated(state.generated, width)))
                last_phase = phase == len(widths) - 1
                state = jax.lax.while_loop(
                    cond if last_phase else lambda st, width=width: cond(st) & (st.iterations < width), body, state)
        return state.tokens, state.lengths, state.logprobs, state.iterations, state.row_steps

    def compacting_loop(start: DecodeState, widths, live_rows, cond, body) -> DecodeState:
        """The decode loop with compaction: an outer loop whose every iteration runs one phase at a (cache
        width, rows per prompt) pair, the narrowest width not yet filled and the fewest rows (``row_levels``)
        that hold every prompt's live rows; a phase ends when the width fills or the live rows fit the next
        level. The outer carry keeps the full layout (N rows, M slots): a phase gathers its rows (each prompt's
        live rows first) and slots, runs, and scatters them back, one copy each way."""
        levels = row_levels(r)
        n = start.sample.shape[0]
        b, total = n // r, start.tokens.shape[0]
        full = start.replace(generated=widen_generated(start.generated, m))

        def phase(width: int, level: int, next_level: int):
            def run(state: DecodeState) -> DecodeState:
                live = (state.sample < total).reshape(b, r)
                keep = jnp.argsort(~live, axis=1, stable=True)[:, :level]  # [B, level] live rows first, in order
                kept = (jnp.arange(b)[:, None] * r + keep).reshape(-1)  # [B * level] rows of the full layout
                part = state.replace(
                    sample=state.sample[kept], step=state.step[kept], last=state.last[kept],
                    generated=constrain_cache(tuple(KVCache(k=kv.k[kept, :, :width], v=kv.v[kept, :, :width])
                                                    for kv in state.generated)))

                def phase_cond(st: DecodeState):
                    go = cond(st)
                    if width < m:
                        go &= st.iterations < width
                    if next_level:
                        go &= live_rows(st).max() > next_level
                    return go

                part = jax.lax.while_loop(phase_cond, body, part)

                def scatter(whole, x):  # [N] <- [B * level]: back to the rows of the full layout
                    return whole.at[kept].set(x)

                return part.replace(
                    sample=scatter(jnp.full(n, total, jnp.int32), part.sample),
                    step=scatter(jnp.ones(n, jnp.int32), part.step), last=scatter(jnp.zeros(n, jnp.int32), part.last),
                    generated=constrain_cache(tuple(
                        KVCache(k=jnp.zeros_like(whole.k).at[kept, :, :width].set(kv.k),
                                v=jnp.zeros_like(whole.v).at[kept, :, :width].set(kv.v))
                        for whole, kv in zip(state.generated, part.generated, strict=True))))
            return run

        phases = [phase(w, level, levels[j + 1] if j + 1 < len(levels) else 0)
                  for w in widths for j, level in enumerate(levels)]

        def outer(state: DecodeState) -> DecodeState:
            # The first width the loop has not filled, and the smallest level >= the busiest prompt's live rows.
            w = jnp.minimum(jnp.searchsorted(jnp.asarray(widths), state.iterations, side="right"), len(widths) - 1)
            level = jnp.sum(jnp.asarray(levels) >= live_rows(state).max()) - 1
            return jax.lax.switch(w * len(levels) + level, phases, state)

        return jax.lax.while_loop(cond, outer, full)

    platform = jax.default_backend() if rows is None else rows.mesh.devices.flat[0].platform
    options = _CPU_DECODE_OPTIONS if platform == "cpu" else None
    if rows is None:
        return jax.jit(decode, compiler_options=options)
    replicated = NamedSharding(rows.mesh, PartitionSpec())
    return jax.jit(decode, out_shardings=(replicated,) * 5, compiler_options=options)

