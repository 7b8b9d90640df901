"""export_params / export_hf and their command line: a training run's params -> init_from / eval / transformers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from transformers import Qwen2_5_VLForConditionalGeneration

from tests.train.conftest import REPO, run_main, tiny_config
from vtjax.convert import cli, load_hf
from vtjax.convert.orbax_io import read_checkpoint_config, restore_params
from vtjax.data import tokenizer as tok_lib
from vtjax.train import export
from vtjax.train.checkpoint import Checkpointer
from vtjax.train.optimizer import make_optimizer
from vtjax.sharding import make_mesh
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
        ckpt.save(step, state, {"next_batch": step}, config.to_dict(), model_cfg.to_hf_dict(), force=True)
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


# ------------------------------------------------- python -m vtjax.convert workdir-to-orbax / workdir-to-hf


def test_export_reads_the_model_config_saved_with_the_step(tmp_path, tokenizer_json):
    """The tokenizer a run adopted its ids from is gone: export still knows the model from the step's
    config.json (rebuilding it from the experiment config would need the tokenizer)."""
    tokenizer = tmp_path / "tokenizer.json"
    shutil.copy(tokenizer_json, tokenizer)
    config = tiny_config("records", **{"data.tokenizer": os.fspath(tokenizer)})
    from vtjax.train.data import match_tokenizer  # the trainer's own adoption of the tokenizer's ids

    model_cfg = match_tokenizer(model_config(config), tok_lib.load_tokenizer(os.fspath(tokenizer)), adopt=True)
    _train_checkpoint(tmp_path / "run", config, model_cfg, steps=(2,))
    tokenizer.unlink()
    got, _, step = export.restore_training_params(tmp_path / "run")
    assert step == 2 and got == model_cfg


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    """A 2-step tiny SFT run (synthetic data): (workdir, its config)."""
    workdir = tmp_path_factory.mktemp("sft") / "run"
    overrides = {"train.num_steps": 2, "train.warmup_steps": 1}
    proc = run_main(workdir, overrides, timeout=600)
    assert proc.returncode == 0, proc.output[-3000:]
    return workdir, tiny_config(**overrides)


def _trained_params(workdir, step):
    """The params of a train-state checkpoint read by Orbax alone (no vtjax code, no target tree)."""
    return ocp.PyTreeCheckpointer().restore(os.fspath(workdir / "checkpoints" / str(step) / "state"))["params"]


def _assert_same_tree(got, want):
    flat_got, tree_got = jax.tree_util.tree_flatten(got)
    flat_want, tree_want = jax.tree_util.tree_flatten(want)
    assert tree_got == tree_want
    for a, b in zip(flat_got, flat_want, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_workdir_to_orbax_is_what_init_from_starts_from(sft_run, tmp_path):
    workdir, config = sft_run
    assert export.checkpoint_steps(workdir) == [2]
    proc = subprocess.run([sys.executable, "-m", "vtjax.convert", "workdir-to-orbax", "--workdir", os.fspath(workdir),
                           "--out", os.fspath(tmp_path / "sft_params")], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"--config.model.init_from={tmp_path / 'sft_params'}" in proc.stdout
    # A run with model.init_from = the export starts from exactly the trained params (the trainer's own loader).
    with config.unlocked():
        config.model.init_from = os.fspath(tmp_path / "sft_params")
    model_cfg = model_config(config)
    tx = make_optimizer(config.train, param_shapes(model_cfg), 2)
    state = init_state(model_cfg, tx, make_mesh(1, -1, 1), seed=123, init_from=config.model.init_from)
    _assert_same_tree(jax.device_get(state.params), _trained_params(workdir, 2))


def test_every_step_holds_a_hub_config_of_the_run_model(sft_run):
    workdir, config = sft_run
    import transformers  # noqa: PLC0415  (the parity oracle reads the step's config.json itself)

    hub = transformers.Qwen2_5_VLConfig.from_pretrained(workdir / "checkpoints" / "2" / "model")
    want = model_config(config)
    assert (hub.vocab_size, hub.hidden_size, hub.num_hidden_layers) == (
        want.text.vocab_size, want.text.hidden_size, want.text.num_hidden_layers)
    assert (hub.video_token_id, hub.vision_config.depth) == (want.video_token_id, want.vision.depth)


def test_workdir_to_hf_loads_in_transformers(sft_run, tmp_path):
    workdir, _ = sft_run
    assert cli.main(["workdir-to-hf", "--workdir", os.fspath(workdir), "--out", os.fspath(tmp_path / "hf"),
                     "--step", "2", "--quiet"]) == 0
    config, params = load_hf(tmp_path / "hf", progress=False)
    _assert_same_tree(jax.device_get(params), _trained_params(workdir, 2))
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp_path / "hf")
    np.testing.assert_array_equal(model.get_input_embeddings().weight.detach().numpy(),
                                  _trained_params(workdir, 2)["embed_tokens"]["embedding"])


def test_workdir_export_refuses_out_over_the_run(sft_run, tmp_path, capsys):
    workdir, _ = sft_run
    before = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
    for verb in ("workdir-to-orbax", "workdir-to-hf"):
        for out in (workdir, workdir.parent, workdir / "checkpoints" / "new", workdir / "checkpoints"):
            assert cli.main([verb, "--workdir", os.fspath(workdir), "--out", os.fspath(out), "--overwrite"]) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and err.startswith(f"error: --out {out} "), err
    assert cli.main(["workdir-to-orbax", "--workdir", os.fspath(tmp_path / "none"), "--out",
                     os.fspath(tmp_path / "o")]) == 2
    assert "--workdir" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")) == before
