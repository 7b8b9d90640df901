"""Trainer test fixtures: the tiny config, generated records + videos + tokenizer, a shared compile cache.

Training steps take seconds to compile on a CPU, and several tests start
subprocesses that compile the same program; a persistent compilation cache
shared by every test process (and its children, via the environment) pays
for each program once.
"""

from __future__ import annotations

import json
import os
import runpy
import socket
import subprocess
import sys

import jax
import pytest

from tests.data.conftest import tokenizer_json, write_video  # noqa: F401  (fixture re-export)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_CONFIG = os.path.join(REPO, "configs", "tiny_sft.py")
# Fast CPU compiles for the tests' steps (about half the compile time; numerics unchanged in kind).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
FAST_COMPILE_FLAGS = " ".join(f"--{k}={str(v).lower()}" for k, v in FAST_COMPILE.items())


@pytest.fixture(scope="session", autouse=True)
def compile_cache(tmp_path_factory):
    root = tmp_path_factory.getbasetemp()
    root = root.parent if root.name.startswith("popen-gw") else root  # one cache for all xdist workers
    path = os.fspath(root / "jax_compile_cache")
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = path
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    return path


def tiny_config(arg: str = "", **overrides):
    """configs/tiny_sft.py with dotted overrides, e.g. tiny_config(**{"train.lr": 1e-2})."""
    config = runpy.run_path(TINY_CONFIG)["get_config"](arg)
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = config
        for p in parents:
            node = node[p]
        node[leaf] = value
    return config


def override_flags(overrides: dict) -> list[str]:
    return [f"--config.{k}={v}" for k, v in overrides.items()]


def run_main(workdir, overrides: dict, *, env=None, timeout=300, wait=True, arg="", config=TINY_CONFIG):
    """Starts ``python -m vtjax.main`` on ``config`` (default the tiny SFT one); returns the Popen
    (waited for when ``wait``)."""
    spec = config + (f":{arg}" if arg else "")
    cmd = [sys.executable, "-m", "vtjax.main", f"--config={spec}", f"--workdir={workdir}",
           *override_flags(overrides)]
    env = dict(os.environ, **(env or {}))
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {FAST_COMPILE_FLAGS}".strip()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    if wait:
        out, _ = proc.communicate(timeout=timeout)
        proc.output = out
    return proc


def free_port() -> int:
    """A loopback port nobody listens on (for a jax.distributed coordinator)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_devices(n: int) -> dict:
    """Environment of a process with ``n`` fake CPU devices."""
    return {"XLA_FLAGS": f"--xla_force_host_platform_device_count={n}", "JAX_PLATFORMS": "cpu"}


def read_metrics(workdir) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="session")
def video_records(tmp_path_factory, tokenizer_json):  # noqa: F811
    """8 multiple-choice records over 8 generated 4-frame videos, with a tokenizer: (records, root, tok)."""
    root = tmp_path_factory.mktemp("sft_videos")
    records = []
    for i in range(8):
        write_video(root / f"v{i}.mp4", frames=8, fps=4, width=56, height=56)
        letter = "AB"[i % 2]
        records.append({
            "problem": f"What does the man do after opening door {i}?",
            "problem_type": "multiple choice", "options": ["A. He sits down", "B. He leaves"],
            "data_type": "video", "path": f"v{i}.mp4", "data_source": "test",
            "process": f"<think>the man {i} walks out</think>", "solution": f"<answer>{letter}</answer>",
        })
    path = root / "records.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records))
    return os.fspath(path), os.fspath(root), tokenizer_json


@pytest.fixture(scope="session")
def records_overrides(video_records, tmp_path_factory):
    """Overrides for configs/tiny_sft.py:records on the generated data, with one-line prompts
    (the Video-Thinker prompts are ~400 tokens under the test tokenizer's tiny vocabulary)."""
    records, root, tok = video_records
    prompts = tmp_path_factory.mktemp("prompts")
    (prompts / "system.txt").write_text("Answer.")
    (prompts / "question.txt").write_text("{question}")
    return {"data.train_files": records, "data.video_roots": root, "data.tokenizer": tok,
            "data.system_prompt": os.fspath(prompts / "system.txt"),
            "data.question_prompt": os.fspath(prompts / "question.txt")}
