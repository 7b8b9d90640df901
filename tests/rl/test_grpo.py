"""grpo.py against a loop-by-loop NumPy transcription of the REFERENCE.md §1 formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vtjax.rl import grpo


# ------------------------------------------------------------ numpy reference


def np_advantages(r, g, scale, eps=1e-4):
    r = np.asarray(r, np.float64)
    out = np.zeros_like(r)
    batch_std = np.sqrt(((r - r.mean()) ** 2).sum() / (len(r) - 1))
    for p in range(len(r) // g):
        grp = r[p * g : (p + 1) * g]
        mean = grp.sum() / g
        std = np.sqrt(((grp - mean) ** 2).sum() / (g - 1)) if g > 1 else 0.0
        for i in range(g):
            a = grp[i] - mean
            if scale == "group":
                a /= std + eps
            elif scale == "batch":
                a /= batch_std + eps
            out[p * g + i] = a
    return out


def np_loss(logp, old, ref, adv, mask, lo, hi, beta, agg, norm=None):
    b, t = logp.shape
    per_tok = np.zeros((b, t))
    kls, clipped = [], []
    for i in range(b):
        for j in range(t):
            ratio = np.exp(logp[i, j] - old[i, j])
            unclipped = ratio * adv[i]
            if lo is None:
                surr, c = unclipped, False
            else:
                cl = min(max(ratio, 1 - lo), 1 + hi) * adv[i]
                surr, c = min(unclipped, cl), cl < unclipped
            d = min(max(ref[i, j] - logp[i, j], -10.0), 10.0)
            kl = np.exp(d) - d - 1
            per_tok[i, j] = -(surr - beta * kl)
            if mask[i, j]:
                kls.append(kl)
                clipped.append(c)
    if agg == "token-mean":
        loss = (per_tok * mask).sum() / mask.sum()
    else:
        seqs = []
        for i in range(b):
            n = mask[i].sum()
            if n == 0:
                continue
            s = (per_tok[i] * mask[i]).sum()
            seqs.append(s / n if agg == "seq-mean-token-mean" else s / (t if norm is None else norm))
        loss = np.mean(seqs)
    return loss, np.mean(kls), np.mean(clipped)


def _inputs(seed, b=4, t=7, spread=0.4):
    rng = np.random.default_rng(seed)
    logp = -rng.uniform(0.05, 3.0, (b, t))
    old = logp + rng.normal(0, spread, (b, t))  # ratio != 1, some beyond the clip range
    ref = logp + rng.normal(0, 1.0, (b, t))
    ref[0, 0] = logp[0, 0] + 14.0  # exercises the [-10, 10] clamp
    ref[1, 1] = logp[1, 1] - 12.0
    adv = rng.normal(0, 1, b)
    lengths = rng.integers(1, t + 1, b)
    lengths[-1] = 0  # an all-padding row
    mask = (np.arange(t)[None] < lengths[:, None]).astype(np.float64)
    mask[0, 0] = mask[1, 1] = 1.0
    return logp, old, ref, adv, mask


# ------------------------------------------------------------ advantages


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_group_advantages_match_numpy(scale):
    r = np.array([1.0, 0.0, 2.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.5, 2.0, 0.0, 3.0])
    got = grpo.group_advantages(jnp.asarray(r), 4, scale=scale)
    np.testing.assert_allclose(np.asarray(got), np_advantages(r, 4, scale), rtol=1e-5, atol=1e-6)


def test_group_advantages_hand_worked():
    # Group [1, 0]: mean 0.5, unbiased std sqrt(0.5) = 0.70711 -> +-0.5 / (0.70711 + 1e-4).
    got = np.asarray(grpo.group_advantages(jnp.array([1.0, 0.0, 3.0, 3.0]), 2))
    a = 0.5 / (np.sqrt(0.5) + 1e-4)
    np.testing.assert_allclose(got, [a, -a, 0.0, 0.0], rtol=1e-6)


def test_group_advantages_is_jittable_and_checks_inputs():
    f = jax.jit(grpo.group_advantages, static_argnames=("group_size", "scale"))
    np.testing.assert_allclose(np.asarray(f(jnp.array([2.0, 0.0]), group_size=2, scale="none")), [1.0, -1.0])
    with pytest.raises(ValueError, match="groups of group_size=3"):
        grpo.group_advantages(jnp.zeros(4), 3)
    with pytest.raises(ValueError, match="group_size >= 2"):
        grpo.group_advantages(jnp.zeros(4), 1)
    with pytest.raises(ValueError, match="scale="):
        grpo.group_advantages(jnp.zeros(4), 2, scale="std")


# ------------------------------------------------------------ loss


@pytest.mark.parametrize("agg", grpo.AGGREGATIONS)
@pytest.mark.parametrize("clip", [(0.2, 0.28), (None, None)])
def test_grpo_loss_matches_numpy(agg, clip):
    logp, old, ref, adv, mask = _inputs(0)
    loss, metrics = grpo.grpo_loss(
        jnp.asarray(logp, jnp.float32), jnp.asarray(old, jnp.float32), jnp.asarray(ref, jnp.float32),
        jnp.asarray(adv, jnp.float32), jnp.asarray(mask), clip_eps_low=clip[0], clip_eps_high=clip[1],
        beta=0.04, agg=agg,
    )
    want, want_kl, want_clip = np_loss(logp, old, ref, adv, mask, clip[0], clip[1], 0.04, agg)
    np.testing.assert_allclose(float(loss), want, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(float(metrics["kl"]), want_kl, rtol=2e-5)
    np.testing.assert_allclose(float(metrics["clip_fraction"]), want_clip, atol=1e-7)
    np.testing.assert_allclose(float(metrics["entropy"]), -(logp * mask).sum() / mask.sum(), rtol=1e-5)
    if clip[0] is not None:
        assert 0.0 < want_clip < 1.0  # the inputs really do cross the clip range
    else:
        assert float(metrics["clip_fraction"]) == 0.0


def test_clipping_changes_the_loss_and_token_norm_is_used():
    logp, old, ref, adv, mask = _inputs(1, spread=0.6)
    args = [jnp.asarray(x, jnp.float32) for x in (logp, old, ref, adv, mask)]
    clipped, _ = grpo.grpo_loss(*args, clip_eps_low=0.1, clip_eps_high=0.1)
    plain, _ = grpo.grpo_loss(*args, clip_eps_low=None, clip_eps_high=None)
    assert abs(float(clipped) - float(plain)) > 1e-3
    normed, _ = grpo.grpo_loss(*args, agg="seq-mean-token-sum-norm", token_norm=32.0)
    want, _, _ = np_loss(logp, old, ref, adv, mask, 0.2, 0.2, 0.04, "seq-mean-token-sum-norm", norm=32.0)
    np.testing.assert_allclose(float(normed), want, rtol=2e-5)


def test_ratio_one_gradient_is_advantage_plus_kl_term():
    # Video-R1: old == logp in value, so d loss / d logp_t = (-A + beta * dkl/dlogp) / n_tokens.
    rng = np.random.default_rng(3)
    logp = jnp.asarray(-rng.uniform(0.1, 2.0, (2, 3)), jnp.float32)
    ref = logp + 0.3
    adv = jnp.array([1.5, -0.5])
    grad = jax.grad(lambda lp: grpo.grpo_loss(lp, lp, ref, adv, jnp.ones((2, 3)), beta=0.1)[0])(logp)
    d = 0.3
    dkl = -(np.exp(d) - 1.0)  # d/dlogp of exp(ref - logp) - (ref - logp) - 1
    want = (-np.asarray(adv)[:, None] + 0.1 * dkl) / 3 / 2 * np.ones((2, 3))
    np.testing.assert_allclose(np.asarray(grad), want, rtol=1e-5)


@pytest.mark.parametrize("agg", grpo.AGGREGATIONS)
def test_gradient_matches_finite_differences(agg):
    logp, old, ref, adv, mask = _inputs(2, b=3, t=4, spread=0.5)
    with jax.enable_x64(True):
        args = [jnp.asarray(x, jnp.float64) for x in (old, ref, adv, mask)]

        @jax.jit
        def f(lp):
            return grpo.grpo_loss(lp, *args, clip_eps_low=0.2, clip_eps_high=0.25, beta=0.04, agg=agg)[0]

        lp = jnp.asarray(logp, jnp.float64)
        grad = np.asarray(jax.grad(f)(lp))
        h = 1e-6
        fd = np.zeros_like(logp)
        for i in range(logp.shape[0]):
            for j in range(logp.shape[1]):
                e = np.zeros_like(logp)
                e[i, j] = h
                fd[i, j] = (float(f(lp + e)) - float(f(lp - e))) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-8)
    assert np.all(grad[mask == 0] == 0.0)


def test_grpo_loss_jits_and_checks_arguments():
    logp, old, ref, adv, mask = (jnp.asarray(x, jnp.float32) for x in _inputs(4))
    f = jax.jit(grpo.grpo_loss, static_argnames=("clip_eps_low", "clip_eps_high", "beta", "agg", "token_norm"))
    loss, _ = f(logp, old, ref, adv, mask, agg="token-mean")
    want, _, _ = np_loss(*(np.asarray(x, np.float64) for x in (logp, old, ref, adv, mask)), 0.2, 0.2, 0.04, "token-mean")
    np.testing.assert_allclose(float(loss), want, rtol=2e-5)
    with pytest.raises(ValueError, match="both to None"):
        grpo.grpo_loss(logp, old, ref, adv, mask, clip_eps_low=None)
    with pytest.raises(ValueError, match="agg="):
        grpo.grpo_loss(logp, old, ref, adv, mask, agg="sum")
    with pytest.raises(ValueError, match="advantages \\[B\\]"):
        grpo.grpo_loss(logp, old, ref, adv[:2], mask)
    with pytest.raises(ValueError, match="set beta=0"):
        grpo.grpo_loss(logp, old, None, adv, mask)
    loss0, m0 = grpo.grpo_loss(logp, old, None, adv, mask, beta=0.0)
    assert float(m0["kl"]) == 0.0 and np.isfinite(float(loss0))


def test_completion_mask():
    tokens = jnp.array([[5, 6, 2, 7, 2], [5, 5, 5, 5, 5], [3, 1, 1, 1, 1], [2, 3, 3, 3, 3]])
    want = np.array([
        [1, 1, 1, 0, 0],  # through the first EOS (2), not the second
        [1, 1, 1, 1, 1],  # no EOS: every token counts
        [1, 0, 0, 0, 0],  # EOS 3 (the second id) at position 0
        [1, 0, 0, 0, 0],
    ], bool)
    np.testing.assert_array_equal(np.asarray(grpo.completion_mask(tokens, (2, 3))), want)
    np.testing.assert_array_equal(np.asarray(grpo.completion_mask(tokens[:2], 2)), want[:2])
