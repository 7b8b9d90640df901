"""Training logs: TensorBoard scalars under workdir/tb, a tqdm bar, a console summary. Process 0 only.

The same interval means are appended to ``workdir/metrics.jsonl`` (one JSON
object per line, with its ``step``) for scripts and tests.

Per-step values (loss, grad norm, lr, tokens, step time, MFU) are averaged
over each ``every_steps`` interval before they are written.
"""

from __future__ import annotations

import json
import logging
import os

import jax

log = logging.getLogger("vtjax.train")


class MetricsLogger:
    """Collects per-step scalars and writes interval means; a no-op on processes other than 0."""

    def __init__(self, workdir: str, *, every_steps: int, total_steps: int, start_step: int,
                 progress_bar: bool = True, name: str = "sft"):
        self.enabled = jax.process_index() == 0
        self.every_steps = every_steps
        self._sums: dict[str, float] = {}
        self._count = 0
        self.writer = self.bar = self.jsonl = None
        if not self.enabled:
            return
        from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel

        self.writer = SummaryWriter(os.path.join(workdir, "tb"))
        self.jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")
        if progress_bar:
            from tqdm import tqdm  # pylint: disable=import-outside-toplevel

            self.bar = tqdm(total=total_steps, initial=start_step, desc=name, dynamic_ncols=True)

    def step(self, step: int, scalars: dict[str, float]) -> dict[str, float] | None:
        """Records one step; at interval ends writes and returns the interval means."""
        if not self.enabled:
            return None
        for k, v in scalars.items():
            self._sums[k] = self._sums.get(k, 0.0) + float(v)
        self._count += 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{scalars['loss']:.4f}", tok_s=f"{scalars.get('tokens_per_s', 0):.0f}")
        if step % self.every_steps:
            return None
        return self.flush(step)

    def flush(self, step: int) -> dict[str, float] | None:
        """Writes the means collected since the last write (if any)."""
        if not self.enabled or not self._count:
            return None
        means = {k: v / self._count for k, v in self._sums.items()}
        self._sums, self._count = {}, 0
        for k, v in means.items():
            self.writer.add_scalar(f"train/{k}", v, step)
        self.writer.flush()
        self.jsonl.write(json.dumps({"step": step, **means}) + "\n")
        self.jsonl.flush()
        summary = " ".join(f"{k}={v:.4g}" for k, v in sorted(means.items()))
        log.info("step %d: %s", step, summary)
        if self.bar is not None:
            self.bar.write(f"step {step}: {summary}")
        return means

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.jsonl.close()
        if self.bar is not None:
            self.bar.close()
