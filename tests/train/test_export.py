"""export_params: a training checkpoint's params -> a params checkpoint that init_from / eval / generate load."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

from tests.train.conftest import tiny_config
from vtjax.convert.orbax_io import read_checkpoint_config, restore_params
from vtjax.data import tokenizer as tok_lib
from vtjax.train import export
from vtjax.train.checkpoint import Checkpointer
from vtjax.train.optimizer import make_optimizer
from vtjax.train.sharding import make_mesh
from vtjax.train.state import init_state, model_config, param_shapes


def _train_checkpoint(workdir, config, model_cfg, steps=(3, 7)):
    """Saves train states (random params, then params + step) as the trainer does; returns the last params."""
    mesh = make_mesh(1, -1, 1)
    tx = make_optimizer(config.train, param_shapes(model_cfg), 10)
    state = init_state(model_cfg, tx, mesh, seed=5)
    ckpt = Checkpointer(os.fspath(workdir), every_steps=1, keep=3, async_save=False)
    for step in steps:
        state = state.replace(step=state.step + 1,
                              params=jax.tree_util.tree_map(lambda x, s=step: x + s, state.params))
        ckpt.save(step, state, {"next_batch": step}, config.to_dict(), force=True)
    ckpt.close()
    return jax.device_get(state.params)


def test_export_round_trip_with_tokenizer(tmp_path, tokenizer_json):
    config = tiny_config("records", **{"data.tokenizer": tokenizer_json})
    tok = tok_lib.load_tokenizer(tokenizer_json)
    from vtjax.train.data import match_tokenizer  # the trainer's own adoption of the tokenizer's ids

    model_cfg = match_tokenizer(model_config(config), tok, adopt=True)
    params = _train_checkpoint(tmp_path / "run", config, model_cfg)
    assert export.checkpoint_steps(tmp_path / "run") == [3, 7]

    out = export.export_params(tmp_path / "run", tmp_path / "params")
    restored = restore_params(out)
    flat_a, tree_a = jax.tree_util.tree_flatten(params)
    flat_b, tree_b = jax.tree_util.tree_flatten(restored)
    assert tree_a == tree_b
    for a, b in zip(flat_a, flat_b, strict=True):
        np.testing.assert_array_equal(a, b)
    stored = read_checkpoint_config(out)
    assert stored.video_token_id == tok.token_to_id(tok_lib.VIDEO_PAD) != model_config(config).video_token_id
    assert stored.eos_token_id == tok.token_to_id(tok_lib.IM_END)
    assert (out / "tokenizer.json").read_bytes() == open(tokenizer_json, "rb").read()
    # The export is a valid init_from: the training config's model resolves from it.
    with config.unlocked():
        config.model.init_from = os.fspath(out)
        config.data.tokenizer = ""
    assert model_config(config).video_token_id == stored.video_token_id


def test_export_older_step_and_errors(tmp_path):
    config = tiny_config()  # synthetic data: no tokenizer, the preset's ids
    params = _train_checkpoint(tmp_path / "run", config, model_config(config), steps=(2, 4))
    out = export.export_params(tmp_path / "run", tmp_path / "p2", step=2)
    older = restore_params(out)
    # step 2 params are the step-4 params minus 4 (the helper added 2, then 4)
    np.testing.assert_allclose(older["embed_tokens"]["embedding"], params["embed_tokens"]["embedding"] - 4,
                               rtol=0, atol=1e-5)
    assert not (out / "tokenizer.json").exists() and not (out / "tokenizer.model").exists()
    with pytest.raises(export.ExportError, match="step=9"):
        export.export_params(tmp_path / "run", tmp_path / "p9", step=9)
    with pytest.raises(export.ExportError, match="no training checkpoint"):
        export.export_params(tmp_path / "nothing", tmp_path / "p0")
    with pytest.raises(FileExistsError):
        export.export_params(tmp_path / "run", out)
