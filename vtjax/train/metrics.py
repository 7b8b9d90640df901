"""Training logs: TensorBoard scalars under workdir/tb, a tqdm bar, a console summary. Process 0 only.

The same interval values are appended to ``workdir/metrics.jsonl`` (one JSON
object per line, with its ``step``) for scripts and tests. A run resumed
from step S first drops the rows after S (written by the run it replaces
after its last checkpoint), so each step appears once.

Per-step values (loss, grad norm, lr, tokens, step time, MFU) are averaged
over each ``every_steps`` interval before they are written. Counters
(``data_skipped``, ``updates_skipped``: per-step counts from the loop) are
summed instead: the value written is the count within that interval.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os

import jax

from vtjax import errors

log = logging.getLogger("vtjax.train")

COUNTERS = ("data_skipped", "updates_skipped")  # summed over an interval, not averaged


class MetricsLogger:
    """Collects per-step scalars and writes interval values; a no-op on processes other than 0."""

    def __init__(self, workdir: str, *, every_steps: int, total_steps: int, start_step: int,
                 progress_bar: bool = True, name: str = "sft", counters: tuple[str, ...] = COUNTERS):
        self.enabled = jax.process_index() == 0
        self.every_steps = every_steps
        self.counters = frozenset(counters)
        self._sums: dict[str, float] = {}
        self._count = 0
        self.writer = self.bar = self.jsonl = None
        if not self.enabled:
            return
        from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel

        self.path = os.path.join(workdir, "metrics.jsonl")
        with self._writing():
            truncate_after(self.path, start_step)
            self.writer = SummaryWriter(os.path.join(workdir, "tb"))
            self.jsonl = open(self.path, "a", encoding="utf-8")
        if progress_bar:
            from tqdm import tqdm  # pylint: disable=import-outside-toplevel

            self.bar = tqdm(total=total_steps, initial=start_step, desc=name, dynamic_ncols=True)

    def step(self, step: int, scalars: dict[str, float]) -> dict[str, float] | None:
        """Records one step; at interval ends writes and returns the interval values."""
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
        """Writes the values collected since the last write (if any): means, and sums of counters."""
        if not self.enabled or not self._count:
            return None
        values = {k: v if k in self.counters else v / self._count for k, v in self._sums.items()}
        self._sums, self._count = {}, 0
        with self._writing():
            for k, v in values.items():
                self.writer.add_scalar(f"train/{k}", v, step)
            self.writer.flush()
            self.jsonl.write(json.dumps({"step": step, **values}) + "\n")
            self.jsonl.flush()
        summary = " ".join(f"{k}={v:.4g}" for k, v in sorted(values.items()))
        log.info("step %d: %s", step, summary)
        if self.bar is not None:
            self.bar.write(f"step {step}: {summary}")
        return values

    def close(self):
        if self.writer is not None:
            with self._writing():
                self.writer.close()
                self.jsonl.close()
        if self.bar is not None:
            self.bar.close()

    @contextlib.contextmanager
    def _writing(self):
        try:
            yield
        except OSError as e:
            raise errors.WorkdirError(f"could not write the training logs {self.path} (and tb/): "
                                      f"{e.strerror or e}; free space there or use another --workdir") from e


def truncate_after(path: str, step: int) -> int:
    """Drops the rows of ``path`` (JSON lines) with a ``step`` above ``step``, and unreadable rows (a line
    cut by a kill); replaces the file atomically. Returns how many rows were dropped."""
    if not os.path.exists(path):
        return 0
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    kept = [line.rstrip("\n") + "\n" for line in lines if _row_step(line) is not None and _row_step(line) <= step]
    if len(kept) == len(lines) and all(line.endswith("\n") for line in lines):
        return 0
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(kept)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    log.info("%s: dropped %d row(s) after step %d (the run resumes from there)", path, len(lines) - len(kept), step)
    return len(lines) - len(kept)


def _row_step(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None
