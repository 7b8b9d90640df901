"""scripts/bench_packing.py (bench_train.py --layout) at tiny sizes: both layouts train on the same skewed
examples, and packing leaves far less padding."""

import importlib.util
import json
import pathlib

from vtjax.buckets import bucket_size
from vtjax.models.qwen2_5_vl import Qwen25VLConfig

SCRIPTS = pathlib.Path(__file__).resolve().parents[2] / "scripts"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_bench_reports_both_layouts(capsys):
    bench = _load("bench_train")
    bench.main(["--layout", "both", "--tiny", "--examples", "12", "--batch", "4", "--rows", "2",
                "--token_budget", "512", "--rounds", "1"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    summary = lines[-1]
    assert [r["layout"] for r in lines if "round" in r] == ["padded", "packed"]
    padded, packed = summary["padded"], summary["packed"]
    examples = _load("bench_packing").skewed_examples(Qwen25VLConfig.tiny(), 12, 0)
    lengths = [len(e["input_ids"]) for e in examples]
    assert padded["examples"] == 12 and padded["useful_tokens"] == sum(lengths)  # 3 steps of 4, nothing dropped
    assert packed["useful_tokens"] <= sum(lengths) and packed["examples"] >= 9  # the tail may fill no batch
    # Padded: each batch of 4 is as wide as its longest example's bucket; packed: rows of 512 tokens.
    slots = 4 * sum(bucket_size(max(lengths[i:i + 4]), 64) for i in (0, 4, 8))
    assert abs(padded["padding_fraction"] - (1 - sum(lengths) / slots)) < 1e-9
    assert abs(packed["padding_fraction"] - (1 - packed["useful_tokens"] / (packed["steps"] * 2 * 512))) < 1e-9
    assert packed["padding_fraction"] < 0.2 < 0.3 < padded["padding_fraction"]  # 0.15 and 0.34 by hand
    assert packed["seconds"] > 0 and summary["packed_over_padded"] > 0 and summary["ratio_at_equal_slot_cost"] > 0
