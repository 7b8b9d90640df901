"""A log line before a jitted step compiles for batch shapes it has not seen, and one with the seconds.

The first step of each shape bucket spends seconds (a large model: minutes)
in XLA's compiler with nothing else to show; these lines say so.
"""

from __future__ import annotations

import logging
import time

import jax

log = logging.getLogger("vtjax.train")

MAIN_ARRAYS = ("input_ids", "patches", "targets")  # the leaves whose shapes name a bucket


def batch_shapes(batch) -> dict[str, tuple[int, ...]]:
    """``{"input_ids": (M, b, L), "patches": (M, Np, 1176), ...}`` of a batch pytree (main arrays only)."""
    shapes = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(batch):
        name = str(getattr(path[-1], "name", getattr(path[-1], "key", path[-1])))
        if name in MAIN_ARRAYS and hasattr(leaf, "shape"):
            shapes[name] = tuple(leaf.shape)
    return shapes


class CompileLog:
    """Tracks the batch shapes ``what`` (e.g. "train step") was compiled for."""

    def __init__(self, what: str):
        self.what = what
        self._seen: set = set()
        self._started: float | None = None

    def before(self, batch) -> None:
        """Call before running the step on ``batch``: logs when these shapes are new (a compile follows)."""
        shapes = batch_shapes(batch)
        key = (jax.tree_util.tree_structure(batch), tuple(
            (tuple(x.shape), str(x.dtype)) for x in jax.tree_util.tree_leaves(batch) if hasattr(x, "shape")))
        self._started = None
        if key in self._seen:
            return
        self._seen.add(key)
        log.info("compiling the %s for batch shapes %s (first step; later steps reuse it)", self.what, shapes)
        self._started = time.perf_counter()

    def after(self) -> None:
        """Call once the step's results are on the host: logs the compile (+ first run) seconds."""
        if self._started is not None:
            log.info("compiled the %s in %.1f s (including its first run)", self.what,
                     time.perf_counter() - self._started)
            self._started = None
