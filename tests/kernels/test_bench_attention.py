"""scripts/bench_attention.py runs on a CPU at tiny sizes and reports skips as JSON lines."""

import importlib.util
import json
import pathlib

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "bench_attention.py"


def test_quick_bench_prints_measurements_and_skips(capsys):
    spec = importlib.util.spec_from_file_location("bench_attention", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--quick", "--impls", "xla,cudnn", "--lengths", "64", "--frames", "2",
                "--iters", "1"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    measured = [r for r in lines if "ms" in r]
    skipped = [r for r in lines if "skipped" in r]
    assert {(r["workload"], r["pass"]) for r in measured} == {
        ("text_causal", "fwd"), ("text_causal", "fwd+bwd"),
        ("vision_windows", "fwd"), ("vision_windows", "fwd+bwd")}
    assert all(r["ms"] > 0 and r["tflops"] > 0 and r["device"].startswith("cpu") for r in measured)
    assert [r["impl"] for r in skipped] == ["cudnn", "cudnn"]
    assert "NVIDIA GPU" in skipped[0]["skipped"]
