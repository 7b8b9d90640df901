"""mode=generate: one video + question through a tiny model; the trace printed and saved; helpers."""

from __future__ import annotations

import json
import os

import pytest

from tests.eval.test_runner import SYSTEM, tiny_ckpt, tiny_data  # noqa: F401  (fixtures)
from vtjax import generate as generate_mode
from vtjax import main
from vtjax.data import batching, chat, examples
from vtjax.data import tokenizer as tok_lib
from vtjax.eval import benchmarks, inference
from vtjax.eval.config import generate_defaults
from vtjax.sampling import generate
from vtjax.train.config import ConfigError


def _config(ckpt_dir, video, question, options, tmp_path):
    (tmp_path / "system.txt").write_text(SYSTEM)
    c = generate_defaults()
    c.model.init_from = ckpt_dir
    c.model.dtype, c.model.attention_impl = "float32", "xla"
    c.data.system_prompt = os.fspath(tmp_path / "system.txt")
    c.data.nframes, c.data.max_pixels, c.data.min_pixels = 4, 56 * 56, 28 * 28
    c.generate.video, c.generate.question, c.generate.options = video, question, "|".join(options)
    c.generate.max_new_tokens = 10
    return c


def test_generate_answers_like_the_eval_prompt(tiny_data, tiny_ckpt, tmp_path, capsys):  # noqa: F811
    ckpt_dir, cfg, params = tiny_ckpt
    item = benchmarks.load_benchmark("video_r1", tiny_data.test_path)[0]
    video = os.path.join(tiny_data.video_root, item["path"])
    out = generate_mode.run(_config(ckpt_dir, video, item["problem"], item["options"], tmp_path),
                            os.fspath(tmp_path / "w"))
    printed = capsys.readouterr().out
    assert item["problem"] in printed and all(o in printed for o in item["options"])
    saved = json.loads((tmp_path / "w" / "answer.json").read_text())
    assert saved["answers"] == json.loads(json.dumps(out["answers"]))
    assert len(out["answers"]) == 1

    # Reference: the record's prompt as the eval pipeline builds it, greedy-decoded directly.
    tok = tok_lib.load_tokenizer(tiny_data.tokenizer_path)
    prompts = chat.Prompts(system=SYSTEM, question_template=chat.Prompts.video_thinker().question_template)
    builder = examples.ExampleBuilder(tok, prompts, "eval",
                                      examples.VideoOptions(nframes=4, max_pixels=56 * 56, min_pixels=28 * 28))
    example = builder(benchmarks.to_records([item], tiny_data.video_root)[0])
    hf, _ = batching.model_inputs(batching.collate([example], pad_id=tok.pad_id))
    ref = generate(cfg, params, **hf, max_new_tokens=10, eos_token_ids=tok.eos_ids)
    n = int(ref["lengths"][0])
    text = tok.decode([int(t) for t in ref["tokens"][0, :n]], skip_special_tokens=True)
    assert out["answers"][0]["text"] == text
    assert generate_mode.layout_trace(text) in printed


def test_generate_samples_several_answers(tiny_data, tiny_ckpt, tmp_path):  # noqa: F811
    item = benchmarks.load_benchmark("video_r1", tiny_data.test_path)[1]
    config = _config(tiny_ckpt[0], os.path.join(tiny_data.video_root, item["path"]), item["problem"], [], tmp_path)
    config.generate.num_samples, config.generate.temperature = 3, 1.0
    out = generate_mode.run(config, os.fspath(tmp_path / "w"))
    texts = [a["text"] for a in out["answers"]]
    assert len(texts) == 3 and len(set(texts)) > 1  # independent samples of a random model differ


CANNED = ["<think>the sky</think> blue :D", "<caption>A man</caption> <answer> a red ball </answer>",
          "<answer>C</answer>", "<answer> </answer>"]


@pytest.mark.parametrize("options,want", [
    ([], [None, "a red ball", "C", None]),  # open question: the <answer> text, never a letter from prose
    (["A. red", "B. blue", "C. green", "D. white"], [None, None, "C", None]),  # multiple choice: option letters
])
def test_generate_reports_a_letter_only_for_options(tiny_data, tiny_ckpt, tmp_path, monkeypatch, capsys,  # noqa: F811
                                                    options, want):
    monkeypatch.setattr(inference, "generate_texts",
                        lambda model, batch, decoding, num_samples=1: CANNED[:num_samples])
    item = benchmarks.load_benchmark("video_r1", tiny_data.test_path)[0]
    config = _config(tiny_ckpt[0], os.path.join(tiny_data.video_root, item["path"]), "What is shown?", options,
                     tmp_path)
    config.generate.num_samples, config.generate.temperature = len(CANNED), 1.0
    out = generate_mode.run(config, os.fspath(tmp_path / "w"))
    assert [a["answer"] for a in out["answers"]] == want
    saved = json.loads((tmp_path / "w" / "answer.json").read_text())
    assert [a["answer"] for a in saved["answers"]] == want
    printed = capsys.readouterr().out
    assert ("(answer: 'a red ball'," in printed) == (not options) and ("(letter: C," in printed) == bool(options)


def test_generate_config_errors(tiny_ckpt, tmp_path):  # noqa: F811
    config = _config(tiny_ckpt[0], os.fspath(tmp_path / "missing.mp4"), "Which?", [], tmp_path)
    with pytest.raises(ConfigError, match="generate.video"):
        generate_mode.run(config, os.fspath(tmp_path))


def test_layout_and_options_helpers():
    text = "Hmm. <time>00:01-00:02</time> <caption>a red circle</caption> <think>first</think> So<answer>B</answer>"
    assert generate_mode.layout_trace(text).splitlines() == [
        "Hmm.", "<time>00:01-00:02</time> <caption>a red circle</caption> <think>first</think> So",
        "<answer>B</answer>"]
    assert generate_mode.parse_options("red | blue|green") == ["A. red", "B. blue", "C. green"]
    assert generate_mode.parse_options("A. red|B) blue") == ["A. red", "B) blue"]
    assert generate_mode.parse_options("") == []


def test_main_registers_the_inference_modes():
    from vtjax import demo
    from vtjax.eval import runner

    assert main.TRAINERS["eval"] is runner.run
    assert main.TRAINERS["generate"] is generate_mode.run
    assert main.TRAINERS["demo"] is demo.run
