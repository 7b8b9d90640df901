"""The notebooks in colabs/ run top to bottom: every code cell, in order, in a fresh Python process.

Each notebook reads its knobs from environment variables (defaulting to the
Colab values); the tests point them at temporary directories, the random tiny
model and the demo's smoke sizes. The process runs as `make demo` does (one
CPU device, fast compiles) and shares a compilation cache with
tests/test_demo.py, whose smoke demo compiles the same programs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = ("01_quickstart", "02_train_synthetic", "03_convert_to_pytorch")
FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"

# Runs in the child: exec each code cell of argv[1] in one namespace, then print the requested values.
_KERNEL = r"""
import json, sys
import matplotlib
matplotlib.use("Agg")
nb = json.load(open(sys.argv[1], encoding="utf-8"))
ns = {"__name__": "__main__"}
for i, cell in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
    exec(compile("".join(cell["source"]), f"{sys.argv[1]}[code cell {i}]", "exec"), ns)
print("NAMESPACE=" + json.dumps({k: eval(expr, ns) for k, expr in json.loads(sys.argv[2]).items()}))
"""


def shared_compile_cache(tmp_path_factory) -> str:
    root = tmp_path_factory.getbasetemp()
    root = root.parent if root.name.startswith("popen-gw") else root  # one cache for all xdist workers
    path = root / "demo_compile_cache"
    path.mkdir(exist_ok=True)
    return os.fspath(path)


def run_notebook(name: str, values: dict[str, str], env: dict[str, str], tmp_path, tmp_path_factory) -> dict:
    """Executes the notebook's code cells in a child process; returns the evaluated ``values`` expressions."""
    env = dict(os.environ, XLA_FLAGS=FAST_COMPILE_FLAGS, JAX_PLATFORMS="cpu", MPLBACKEND="Agg",
               VTJAX_NOTEBOOK_WORKDIR=os.fspath(tmp_path / "nb"), VTJAX_DEMO_WORKDIR=os.fspath(tmp_path / "no_demo"),
               JAX_COMPILATION_CACHE_DIR=shared_compile_cache(tmp_path_factory),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", **env)
    env.pop("VTJAX_CHECKPOINT", None)
    path = os.path.join(REPO, "colabs", f"{name}.ipynb")
    proc = subprocess.run([sys.executable, "-c", _KERNEL, path, json.dumps(values)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("NAMESPACE="))
    return json.loads(line[len("NAMESPACE="):])


def test_notebooks_are_committed_clean_and_runnable_as_python():
    for name in NOTEBOOKS:
        with open(os.path.join(REPO, "colabs", f"{name}.ipynb"), encoding="utf-8") as f:
            nb = json.load(f)
        assert nb["nbformat"] == 4
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, name  # no stale outputs
                source = "".join(cell["source"])
                compile(source, name, "exec")  # plain Python: no `!` or `%` lines outside comments


def test_quickstart_asks_the_tiny_random_model(tmp_path, tmp_path_factory):
    ns = run_notebook("01_quickstart", {
        "use_demo": "use_demo", "keys": "sorted(answer)", "frames": "int(clip.shape[0])",
        "ids_match": "model.config.video_token_id == model.tokenizer.token_to_id('<|video_pad|>')",
    }, {"VTJAX_MAX_NEW_TOKENS": "8"}, tmp_path, tmp_path_factory)
    assert ns == {"use_demo": False, "keys": ["answer", "format_ok", "segments", "text"], "frames": 8,
                  "ids_match": True}


def test_train_synthetic_smoke(tmp_path, tmp_path_factory):
    ns = run_notebook("02_train_synthetic", {
        "sft_steps": "sft_result.step", "grpo_steps": "grpo_result.step", "planned": "demo.grpo.num_steps",
        "stages": "sorted(evals)", "chance": "chance", "png": "open(png, 'rb').read(8).hex()",
    }, {"VTJAX_NOTEBOOK_SMOKE": "1"}, tmp_path, tmp_path_factory)
    assert ns["sft_steps"] >= 1 and ns["grpo_steps"] == ns["planned"]
    assert ns["stages"] == ["after SFT", "after SFT + GRPO"]
    assert ns["chance"] == pytest.approx(25.0)
    assert bytes.fromhex(ns["png"]) == b"\x89PNG\r\n\x1a\n"


def test_convert_round_trip_to_transformers(tmp_path, tmp_path_factory):
    ns = run_notebook("03_convert_to_pytorch", {"diff": "diff", "files": "sorted(os.listdir(hf_dir))"}, {},
                      tmp_path, tmp_path_factory)
    assert ns["diff"] < 1e-3
    assert "config.json" in ns["files"] and any(f.endswith(".safetensors") for f in ns["files"])
