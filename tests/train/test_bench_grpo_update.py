"""scripts/bench_grpo_update.py at tiny sizes: both layouts run, give the same loss, and the shared layout
processes the prompt once per group."""

import importlib.util
import json
import pathlib

from vtjax.models.qwen2_5_vl import bucket_size
from vtjax.models.qwen2_5_vl.inputs import MIN_TEXT_BUCKET

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "bench_grpo_update.py"


def test_tiny_bench_reports_both_layouts(capsys):
    spec = importlib.util.spec_from_file_location("bench_grpo_update", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--prompts", "1", "--group", "4", "--rounds", "1", "--grid", "2,4,4", "--text", "10",
                "--lengths", "10,20", "--max-new-tokens", "32"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    summary = lines[-1]
    assert summary["summary"] == "update + reference log-probs per group"
    assert summary["loss_repeated"] == summary["loss_shared_prefix"]
    assert summary["repeated_s"] > 0 and summary["shared_prefix_s"] > 0
    prompt = summary["prompt_tokens"]  # repeated: G rows of prompt + budget; shared: one row, the prompt once
    assert summary["repeated_tokens_per_group"] == 4 * bucket_size(prompt + 32, MIN_TEXT_BUCKET)
    assert summary["shared_prefix_tokens_per_group"] <= bucket_size(prompt + 4 * 20, MIN_TEXT_BUCKET)
    assert [r["layout"] for r in lines if "round" in r] == ["repeated", "shared_prefix"]
