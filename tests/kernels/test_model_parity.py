"""The tiny Qwen2.5-VL gives the same logits with Pallas attention (interpreted) as with XLA.

Both components switch to impl="pallas": the vision tower (window and
per-frame segments, batch 1) and the decoder (causal, GQA, a left-padded
row, batch 2). The test also checks that the traced program holds Pallas
kernels for both (told apart by their batch size), so a config field that
were ignored could not pass.
"""

import jax
import jax.extend
import numpy as np

from tests.parity.hf_reference import random_pixels, vision_run
from vtjax.models.qwen2_5_vl import Qwen25VLConfig, forward, init_params, prepare_inputs
from vtjax.models.qwen2_5_vl.api import compiled_logits

from .conftest import relative_error

BASE = Qwen25VLConfig.tiny()


def _with_impls(vision: str, text: str) -> Qwen25VLConfig:
    return BASE.replace(vision=BASE.vision.__class__(**{**BASE.vision.__dict__,
                                                        "attention_impl": vision}),
                        text=BASE.text.__class__(**{**BASE.text.__dict__, "attention_impl": text}))


def _batch(config):
    """Two rows with a video each; the second row is shorter and left-padded."""
    rng = np.random.default_rng(0)
    grids = [(2, 8, 12), (1, 12, 8)]  # 192 and 96 patches; 64-patch windows, frames of 96
    rows = [[11, 12, 13] + vision_run(config, "video", grids[0]) + [14, 15, 16, 17],
            [21, 22] + vision_run(config, "video", grids[1]) + [23]]
    length = max(map(len, rows))
    ids = np.full((2, length), config.pad_token_id, np.int64)
    mask = np.zeros((2, length), np.int64)
    for r, row in enumerate(rows):
        ids[r, length - len(row):] = row
        mask[r, length - len(row):] = 1
    return dict(input_ids=ids, attention_mask=mask,
                pixel_values_videos=random_pixels(rng, config, grids),
                video_grid_thw=np.array(grids), second_per_grid_ts=np.array([1.0, 0.5], np.float32))


def _params(config):
    """Init params plus noise, so attention patterns are far from uniform and matter."""
    rng = np.random.default_rng(1)  # host-side noise: no per-shape compiles
    return jax.tree_util.tree_map(
        lambda x: x + 0.1 * rng.standard_normal(x.shape).astype(x.dtype), init_params(config, 0))


def _pallas_batch_sizes(jaxpr) -> set:
    """Leading dim of the first 4-D operand ([B, ...] q) of every pallas_call in ``jaxpr``."""
    found = set()
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "pallas_call":
            found |= {v.aval.shape[0] for v in eqn.invars if len(v.aval.shape) == 4}
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            found |= _pallas_batch_sizes(sub)
    return found


def test_logits_match_xla():
    reference_config = _with_impls("xla", "xla")
    config = _with_impls("pallas", "pallas")
    params = _params(reference_config)
    batch = _batch(reference_config)

    inputs = prepare_inputs(config, **batch)
    traced = jax.make_jaxpr(compiled_logits(config))(params, inputs).jaxpr
    # Vision attention runs with batch 1 (all patches of the batch), the decoder with batch 2.
    assert _pallas_batch_sizes(traced) == {1, 2}, "vision and decoder must both run Pallas kernels"

    want = forward(reference_config, params, **batch)
    got = forward(config, params, **batch)
    real = batch["attention_mask"].astype(bool)
    assert np.isfinite(got[real]).all()
    assert relative_error(got[real], want[real]) <= 1e-5
