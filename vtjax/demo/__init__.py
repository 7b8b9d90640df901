"""The `make demo` pipeline: a tiny Qwen2.5-VL trained on synthetic videos, SFT then GRPO (docs/demo.md).

Modules:
  stages    data, the random model, and the SFT / GRPO / eval configs built from configs/demo.py
  report    the results table, report.md and the curves PNG
  pipeline  run(config, workdir): every stage in order (vtjax.main's mode=demo)
"""

from vtjax.demo.pipeline import run

__all__ = ["run"]
