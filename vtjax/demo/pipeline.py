"""``mode=demo``: synthetic data -> random tiny Qwen2.5-VL -> SFT -> eval -> GRPO -> eval -> report.

Workdir layout (every stage resumes or is reused when the demo is rerun):

    data/synthetic-<hash>/   videos, records, tokenizer (cached by config)
    init/                    the random model as a params checkpoint
    sft/                     SFT run: checkpoints/, tb/, metrics.jsonl
    sft_params/              its params, exported (GRPO's and eval's init_from)
    eval_sft/                predictions + scores of the SFT model on the test split
    grpo/, grpo_params/, eval_grpo/   the same for GRPO
    report.md, curves.png, results.json
"""

from __future__ import annotations

import json
import logging
import os
import time

from vtjax.demo import report, stages
from vtjax.eval import benchmarks, inference, runner
from vtjax.train import export, sft

log = logging.getLogger("vtjax.demo")


def run_grpo(config, workdir: str):
    """The GRPO stage: ``vtjax.train.grpo.run`` on a ``grpo_defaults()`` config."""
    from vtjax.train import grpo  # pylint: disable=import-outside-toplevel

    return grpo.run(config, workdir)


def export_once(train_workdir: str, out_dir: str) -> str:
    """``export_params`` unless ``out_dir`` already holds this run's final params."""
    if not os.path.isfile(os.path.join(out_dir, "vtjax.json")):
        export.export_params(train_workdir, out_dir, overwrite=True)
    return out_dir


def evaluate(demo, prompts, params_dir: str, items: list[dict], video_root: str, out_dir: str, desc: str) -> dict:
    """Greedy answers of ``params_dir`` on ``items``, scored; predictions under ``out_dir`` (resumable)."""
    cfg = stages.eval_config(demo, prompts, params_dir)
    model = inference.load_model(cfg)
    metrics = runner.evaluate_items(model, items, video_root, os.path.join(out_dir, "predictions.jsonl"),
                                    runner.decoding_of(cfg), runner.pipeline_config(cfg, cfg.eval.batch_size),
                                    max_length=cfg.data.max_length, progress=demo.log.progress_bar, desc=desc)
    with open(os.path.join(out_dir, "scores.json"), "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=1)
    return runner.without_items(metrics)


def run(demo, workdir: str) -> dict:
    """Runs every stage of ``demo`` (configs/demo.py) under ``workdir``; prints and returns the results."""
    start = time.perf_counter()
    path = lambda *p: os.path.join(workdir, *p)  # noqa: E731
    os.makedirs(workdir, exist_ok=True)
    timings = {}

    def lap(name, t0):
        timings[name] = round(time.perf_counter() - t0, 1)
        log.info("%s done in %.1f s", name, timings[name])

    t0 = time.perf_counter()
    ds = stages.dataset(demo, workdir)
    prompts = stages.write_prompts(demo, workdir)
    init_dir, num_params = stages.random_checkpoint(demo, ds, path("init"))
    lap("data + init", t0)
    log.info("data: %s; model: %.2fM parameters", ds.root, num_params / 1e6)

    t0 = time.perf_counter()
    sft_result = sft.run(stages.sft_config(demo, ds, prompts, init_dir), path("sft"))
    sft_params = export_once(path("sft"), path("sft_params"))
    lap("sft", t0)

    items = benchmarks.load_benchmark("video_r1", ds.test_path)
    chance = 100.0 * sum(1.0 / len(it["options"]) for it in items) / len(items)
    evals = {}
    t0 = time.perf_counter()
    evals["after SFT"] = evaluate(demo, prompts, sft_params, items, ds.video_root, path("eval_sft"), "eval after SFT")
    lap("eval after sft", t0)

    t0 = time.perf_counter()
    grpo_result = run_grpo(stages.grpo_config(demo, ds, prompts, sft_params), path("grpo"))
    grpo_params = export_once(path("grpo"), path("grpo_params"))
    lap("grpo", t0)
    t0 = time.perf_counter()
    evals["after SFT + GRPO"] = evaluate(demo, prompts, grpo_params, items, ds.video_root, path("eval_grpo"),
                                         "eval after GRPO")
    lap("eval after grpo", t0)

    sft_metrics, grpo_metrics = report.read_metrics(path("sft")), report.read_metrics(path("grpo"))
    reward = report.reward_change(grpo_metrics)
    table = report.table_markdown(chance, evals)
    png = report.plot_curves(path("curves.png"), sft_metrics, grpo_metrics, evals, chance)
    timings["total"] = round(time.perf_counter() - start, 1)
    facts = {"model": f"{num_params / 1e6:.2f}M parameters (Qwen2.5-VL structure, random init)",
             "data": f"{demo.data.num_train} train / {len(items)} test questions, kinds: "
                     f"{', '.join(demo.data.question_kinds)}",
             "SFT": f"{sft_result.step} steps of {demo.sft.batch_size}",
             "GRPO": f"{grpo_result.step} steps of {demo.grpo.batch_size} prompts x {demo.grpo.group_size} samples",
             "seconds per stage": timings}
    report.write_report(path("report.md"), table=table, facts=facts, reward=reward, png=png)
    results = {"chance": chance, "evals": evals, "grpo_reward_first_last": reward, "timings": timings,
               "num_params": num_params}
    with open(path("results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    print("\n" + table)
    print(f"GRPO mean training reward: {reward[0]:.3f} -> {reward[1]:.3f}")
    print(f"report: {path('report.md')}  curves: {png}  ({timings['total']:.0f} s)")
    return results
