"""mode=eval end to end on a tiny random model and a few synthetic questions: outputs, resume, scores, files."""

from __future__ import annotations

import json
import os
import shutil

import jax
import numpy as np
import pytest

from vtjax.convert.orbax_io import write_params_checkpoint
from vtjax.data import batching, chat, examples, synthetic
from vtjax.data import tokenizer as tok_lib
from vtjax.eval import benchmarks, inference, runner
from vtjax.eval.config import eval_defaults
from vtjax.eval.predictions import PredictionStore
from vtjax.models.qwen2_5_vl import Qwen25VLConfig, init_params
from vtjax.sampling import generate
from vtjax.train.config import ConfigError
from vtjax.train.data import match_tokenizer

SYSTEM = "Answer with tags."
MAX_NEW = 12


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """6 test questions over 56x56 videos of >= 4 frames, with their tokenizer."""
    root = tmp_path_factory.mktemp("runner_data")
    cfg = synthetic.SyntheticConfig(seed=3, num_train=2, num_test=6, size=56, min_duration_s=3, max_duration_s=4,
                                    fps=2, distractors=3, min_objects=4, max_objects=4)
    return synthetic.write_dataset(os.fspath(root), cfg, extra_texts=[SYSTEM, "{question}"])


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory, tiny_data):
    """A params checkpoint of the tiny random model with the synthetic tokenizer: (dir, config, params)."""
    out = tmp_path_factory.mktemp("runner_ckpt")
    tok = tok_lib.load_tokenizer(tiny_data.tokenizer_path)
    cfg = match_tokenizer(Qwen25VLConfig.tiny(), tok, adopt=True)
    params = init_params(cfg, 7)
    write_params_checkpoint(out, cfg, params)
    os.link(tiny_data.tokenizer_path, out / "tokenizer.model")
    return os.fspath(out), cfg, params


def tiny_eval_config(ds, ckpt_dir, tmp_path, **eval_fields):
    (tmp_path / "system.txt").write_text(SYSTEM)
    c = eval_defaults()
    c.model.init_from = ckpt_dir
    c.model.dtype, c.model.attention_impl = "float32", "xla"
    c.data.system_prompt = os.fspath(tmp_path / "system.txt")
    c.data.question_prompt = ""
    c.data.nframes, c.data.max_pixels, c.data.min_pixels = 4, 56 * 56, 28 * 28
    c.eval.files, c.eval.video_root = ds.test_path, ds.video_root
    c.eval.batch_size, c.eval.max_new_tokens, c.eval.progress_bar = 4, MAX_NEW, False
    for k, v in eval_fields.items():
        c.eval[k] = v
    return c


def test_eval_matches_direct_generation_and_resumes(tiny_data, tiny_ckpt, tmp_path, monkeypatch):
    ckpt_dir, cfg, params = tiny_ckpt
    config = tiny_eval_config(tiny_data, ckpt_dir, tmp_path, limit=3, batch_size=3)
    rows_generated = []
    real = inference.generate_texts

    def counting(model, batch, decoding, num_samples=1):
        rows_generated.append(list(np.asarray(batch["record_id"])[batch["example_mask"]]))
        return real(model, batch, decoding, num_samples)

    monkeypatch.setattr(inference, "generate_texts", counting)
    first = runner.run(config, os.fspath(tmp_path / "w"))
    assert first["test"]["count"] == 3 and first["test"]["missing"] == []
    pred_path = tmp_path / "w" / "eval" / "predictions" / "test.jsonl"
    rows = [json.loads(line) for line in pred_path.read_text().splitlines()]
    items = benchmarks.load_benchmark("video_r1", tiny_data.test_path)
    assert [r["id"] for r in rows] == [it["id"] for it in items[:3]]

    # The stored answers are greedy generation of the same three prompts, built independently of the runner.
    tok = tok_lib.load_tokenizer(tiny_data.tokenizer_path)
    template = chat.Prompts.video_thinker().question_template  # data.question_prompt "" = the default one
    builder = examples.ExampleBuilder(tok, chat.Prompts(system=SYSTEM, question_template=template), "eval",
                                      examples.VideoOptions(nframes=4, max_pixels=56 * 56, min_pixels=28 * 28))
    batch = batching.collate([builder(r) for r in benchmarks.to_records(items[:3], tiny_data.video_root)],
                             pad_id=tok.pad_id)
    hf, _ = batching.model_inputs(batch)
    out = generate(cfg, params, **hf, max_new_tokens=MAX_NEW, eos_token_ids=tok.eos_ids)
    for row, tokens, n in zip(rows, out["tokens"], out["lengths"], strict=True):
        ids = [int(t) for t in tokens[:n] if int(t) not in tok.eos_ids]
        assert row["output"] == tok.decode(ids, skip_special_tokens=True)

    # Resume: a ground-truth answer already stored for record 3 is kept; only records 4 and 5 are generated.
    truth = items[3]
    gt_text = next(json.loads(line) for line in open(tiny_data.test_path) if json.loads(line)["id"] == truth["id"])
    PredictionStore(pred_path).add(truth["id"], gt_text["process"] + "\n" + gt_text["solution"])
    rows_generated.clear()
    config = tiny_eval_config(tiny_data, ckpt_dir, tmp_path, limit=0, batch_size=3)
    second = runner.run(config, os.fspath(tmp_path / "w"))
    assert sorted(sum(rows_generated, [])) == [items[4]["id"], items[5]["id"]]
    scores = json.loads((tmp_path / "w" / "eval" / "scores" / "test.json").read_text())
    by_id = {it["id"]: it for it in scores["items"]}
    assert by_id[truth["id"]]["correct"] == 1.0 and by_id[truth["id"]]["format"] == 1.0
    assert by_id[truth["id"]]["iou"] == pytest.approx(1.0)
    assert second["test"]["count"] == 6
    assert second["test"]["accuracy"] == pytest.approx(100 * np.mean([by_id[it["id"]]["correct"] for it in items]))
    summary = (tmp_path / "w" / "eval" / "summary.md").read_text()
    assert "| test | 6 | 6 | 0 | 0 |" in summary and "- test: all 6 questions scored." in summary


def test_random_baseline_needs_a_tokenizer(tiny_data, tmp_path):
    config = tiny_eval_config(tiny_data, "", tmp_path)
    with pytest.raises(ConfigError, match="data.tokenizer"):
        inference.load_model(config)


def test_eval_config_errors_name_the_field(tiny_data, tiny_ckpt, tmp_path):
    config = tiny_eval_config(tiny_data, tiny_ckpt[0], tmp_path)
    config.eval.benchmark = "video_holmez"
    with pytest.raises(ConfigError, match="eval.benchmark"):
        runner.run(config, os.fspath(tmp_path))
    config = tiny_eval_config(tiny_data, tiny_ckpt[0], tmp_path)
    config.eval.files = os.fspath(tmp_path / "missing.jsonl")
    with pytest.raises(ConfigError, match="eval.files"):
        runner.run(config, os.fspath(tmp_path))
    config = tiny_eval_config(tiny_data, tiny_ckpt[0], tmp_path)
    config.model.from_workdir = os.fspath(tmp_path)
    with pytest.raises(ConfigError, match="model.from_workdir"):
        runner.run(config, os.fspath(tmp_path))


def test_loaded_params_are_placed_on_the_mesh(tiny_data, tiny_ckpt, tmp_path):
    config = tiny_eval_config(tiny_data, tiny_ckpt[0], tmp_path)
    model = inference.load_model(config)
    leaves = jax.tree_util.tree_leaves(model.params)
    assert all(isinstance(x, jax.Array) for x in leaves)
    np.testing.assert_array_equal(np.asarray(model.params["embed_tokens"]["embedding"]),
                                  np.asarray(tiny_ckpt[2]["embed_tokens"]["embedding"]))
    assert model.config.eos_token_id == model.tokenizer.token_to_id(tok_lib.IM_END)


def test_eval_lists_a_broken_video_as_skipped(tiny_data, tiny_ckpt, tmp_path):
    """Three questions, the second's video unreadable: two are scored, the third is listed with its reason."""
    with open(tiny_data.test_path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f][:3]
    root = tmp_path / "videos"
    for row in rows:
        (root / row["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(os.path.join(tiny_data.video_root, row["path"]), root / row["path"])  # links out of a root are refused
    rows[1]["path"] = "broken.mp4"
    (root / "broken.mp4").write_bytes(b"not a video")
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = tiny_eval_config(tiny_data, tiny_ckpt[0], tmp_path, files=os.fspath(bench), video_root=os.fspath(root),
                              batch_size=2)
    result = runner.run(config, os.fspath(tmp_path / "w"))["bench"]
    broken = rows[1]["id"]
    assert result["expected"] == 3 and result["count"] == 2 and result["missing"] == []
    assert list(result["skipped"]) == [broken] and result["skipped"][broken].startswith(os.fspath(root / "broken.mp4"))
    scores = json.loads((tmp_path / "w" / "eval" / "scores" / "bench.json").read_text())
    assert scores["skipped"] == result["skipped"] and [it["id"] for it in scores["items"]] == [rows[0]["id"],
                                                                                               rows[2]["id"]]
    summary = (tmp_path / "w" / "eval" / "summary.md").read_text()
    assert f"- bench: 2 of 3 questions scored (the others count as wrong in accuracy); 1 skipped: {broken} ({root / 'broken.mp4'}: " in summary
    assert "| bench | 3 | 2 | 0 | 1 |" in summary
