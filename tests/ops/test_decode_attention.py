"""The one decode attention (new tokens + shared prompt cache + per-row generated cache) against a float64
numpy reference over the concatenated keys, and against full causal attention of the whole sequence."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vtjax.ops.attention import attention
from vtjax.ops.decode_attention import decode_attention


def _numpy_reference(q, new_k, new_v, prompt_k, prompt_v, prompt_mask, gen_k, gen_v, gen_visible):
    """Per row, new token and head: softmax over the prompt's visible keys, the row's visible generated
    keys and the new tokens up to this one, in float64, K/V repeated per GQA group. Caches are head-major:
    they are made position-major here."""
    q, new_k, new_v, prompt_k, prompt_v, gen_k, gen_v = (
        np.asarray(jnp.asarray(x, jnp.float32), np.float64) for x in (q, new_k, new_v, prompt_k, prompt_v, gen_k, gen_v))
    prompt_k, prompt_v, gen_k, gen_v = (x.transpose(0, 2, 1, 3) for x in (prompt_k, prompt_v, gen_k, gen_v))
    n, t, hq, d = q.shape
    b = prompt_k.shape[0]
    group = hq // prompt_k.shape[2]
    out = np.zeros(q.shape)
    for row in range(n):
        prompt = row // (n // b)
        for tok in range(t):
            keys_seen = np.concatenate([prompt_k[prompt, prompt_mask[prompt]], gen_k[row, gen_visible[row, tok]],
                                        new_k[row, :tok + 1]])
            values_seen = np.concatenate([prompt_v[prompt, prompt_mask[prompt]], gen_v[row, gen_visible[row, tok]],
                                          new_v[row, :tok + 1]])
            if not len(keys_seen):
                continue
            for h in range(hq):
                logits = keys_seen[:, h // group] @ q[row, tok, h] / np.sqrt(d)
                p = np.exp(logits - logits.max())
                out[row, tok, h] = (p / p.sum()) @ values_seen[:, h // group]
    return out


def _inputs(seed, *, prompts=2, samples=3, tokens=1, prompt_len=24, slots=16, hq=8, hkv=2, d=32,
            dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    n = prompts * samples
    normal = lambda *shape: jnp.asarray(rng.standard_normal(shape), dtype)  # noqa: E731
    prompt_mask = np.ones((prompts, prompt_len), bool)
    prompt_mask[0, :5] = False  # left padding of prompt 0
    written = rng.integers(0, slots - tokens + 1, n)  # slots each row has written before this step
    visible = np.broadcast_to(np.arange(slots)[None, None, :] < written[:, None, None], (n, tokens, slots))
    return (normal(n, tokens, hq, d), normal(n, tokens, hkv, d), normal(n, tokens, hkv, d),
            normal(prompts, hkv, prompt_len, d), normal(prompts, hkv, prompt_len, d),
            prompt_mask, normal(n, hkv, slots, d), normal(n, hkv, slots, d), visible)


@pytest.mark.parametrize("hq, hkv, tokens", [(4, 4, 1), (8, 2, 1), (7, 1, 3)])
@pytest.mark.parametrize("dtype, tol", [(jnp.float32, 1e-5), (jnp.bfloat16, 1e-2)])
def test_matches_reference_with_ragged_rows(hq, hkv, tokens, dtype, tol):
    args = _inputs(0, hq=hq, hkv=hkv, tokens=tokens, dtype=dtype)
    got = jax.jit(decode_attention)(*args)
    want = _numpy_reference(*args)
    assert got.shape == args[0].shape and got.dtype == dtype
    err = np.linalg.norm(np.asarray(got, np.float64) - want) / np.linalg.norm(want)
    assert err <= tol


def test_hidden_entries_do_not_matter():
    """Whatever finite values hidden prompt and generated slots hold has no effect."""
    q, nk, nv, pk, pv, pmask, gk, gv, visible = _inputs(1)
    got = decode_attention(q, nk, nv, pk, pv, pmask, gk, gv, visible)
    seen = visible[:, 0, None, :, None]  # [N, 1, M, 1]
    poisoned = decode_attention(q, nk, nv, pk.at[0, :, :5].set(1e4), pv.at[0, :, :5].set(1e30), pmask,
                                jnp.where(seen, gk, -1e4), jnp.where(seen, gv, 1e30), visible)
    np.testing.assert_allclose(poisoned, got, rtol=1e-6, atol=1e-6)


def test_equals_full_causal_attention_of_each_sample():
    """Each sample's new tokens, against its prompt cache and its earlier generated slots, are the last rows
    of causal attention over that sample's whole sequence (prompt + generated + new)."""
    prompts, samples, prompt_len, written, tokens, slots, hq, hkv, d = 2, 3, 20, 6, 2, 12, 8, 2, 32
    rng = np.random.default_rng(3)
    n = prompts * samples
    normal = lambda *shape: jnp.asarray(rng.standard_normal(shape), jnp.float32)  # noqa: E731
    prompt_k, prompt_v = normal(prompts, prompt_len, hkv, d), normal(prompts, prompt_len, hkv, d)
    gen_q, gen_k, gen_v = (normal(n, written + tokens, h, d) for h in (hq, hkv, hkv))
    full_k = jnp.concatenate([jnp.repeat(prompt_k, samples, axis=0), gen_k], axis=1)  # [N, L, Hkv, D]
    full_v = jnp.concatenate([jnp.repeat(prompt_v, samples, axis=0), gen_v], axis=1)
    full_q = jnp.concatenate([jnp.zeros((n, prompt_len, hq, d)), gen_q], axis=1)
    full = attention(full_q, full_k, full_v, causal=True, impl="xla")[:, -tokens:]
    head_major = lambda x: x.transpose(0, 2, 1, 3)  # noqa: E731
    cache_k = jnp.zeros((n, hkv, slots, d)).at[:, :, :written].set(head_major(gen_k[:, :written]))
    cache_v = jnp.zeros((n, hkv, slots, d)).at[:, :, :written].set(head_major(gen_v[:, :written]))
    visible = np.broadcast_to(np.arange(slots) < written, (n, tokens, slots))
    got = decode_attention(gen_q[:, -tokens:], gen_k[:, -tokens:], gen_v[:, -tokens:], head_major(prompt_k),
                           head_major(prompt_v), np.ones((prompts, prompt_len), bool), cache_k, cache_v, visible)
    np.testing.assert_allclose(got, full, rtol=1e-5, atol=1e-6)


def test_neither_cache_is_repeated():
    """No intermediate is as large as the prompt cache repeated per sample or a cache repeated per head."""
    prompts, samples, prompt_len, slots, hq, hkv, d = 2, 8, 4096, 256, 28, 4, 128
    spec = jax.ShapeDtypeStruct
    n = prompts * samples
    jaxpr = jax.make_jaxpr(decode_attention)(
        spec((n, 1, hq, d), jnp.bfloat16), spec((n, 1, hkv, d), jnp.bfloat16), spec((n, 1, hkv, d), jnp.bfloat16),
        spec((prompts, hkv, prompt_len, d), jnp.bfloat16), spec((prompts, hkv, prompt_len, d), jnp.bfloat16),
        spec((prompts, prompt_len), bool), spec((n, hkv, slots, d), jnp.bfloat16),
        spec((n, hkv, slots, d), jnp.bfloat16), spec((n, 1, slots), bool)).jaxpr
    prompt_cache = prompts * prompt_len * hkv * d
    sizes = [int(np.prod(v.aval.shape)) for eqn in jaxpr.eqns for v in eqn.outvars]
    assert max(sizes) <= prompt_cache, f"an intermediate of {max(sizes)} elements > the prompt cache"


@pytest.mark.parametrize("change, message", [
    (dict(q=np.zeros((6, 4, 64))), r"q must be \[N, T, Hq, D\]"),
    (dict(new_k=np.zeros((6, 2, 2, 32))), r"new_k and new_v must both be \[N, T, Hkv, D\]"),
    (dict(q=np.zeros((5, 1, 8, 32)), new_k=np.zeros((5, 1, 2, 32)), new_v=np.zeros((5, 1, 2, 32))),
     "multiple of 2 prompts"),
    (dict(prompt_mask=np.ones((2, 3), bool)), r"must be \[B, Lp\]"),
    (dict(generated_visible=np.ones((6, 1, 3), bool)), r"must be \[N, T, M\]"),
    (dict(q=np.zeros((6, 1, 7, 32))), "kv heads dividing the query heads"),
])
def test_bad_inputs_are_named(change, message):
    names = ("q", "new_k", "new_v", "prompt_k", "prompt_v", "prompt_mask", "generated_k", "generated_v",
             "generated_visible")
    args = dict(zip(names, _inputs(0), strict=True))
    args.update(change)
    with pytest.raises(ValueError, match=message):
        decode_attention(**args)
