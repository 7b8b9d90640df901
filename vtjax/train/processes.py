"""What every process of a run must agree on before a step: padded sizes and whether to stop."""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils


def agree(local: np.ndarray, stop: int = 0) -> tuple[np.ndarray, int]:
    """Elementwise max over processes of this process's sizes and stop code (one small host all-gather)."""
    mine = np.concatenate([np.asarray(local, np.int64).reshape(-1), [int(stop)]]).astype(np.int64)
    if jax.process_count() > 1:
        mine = np.asarray(multihost_utils.process_allgather(mine)).reshape(-1, mine.size).max(axis=0)
    return mine[:-1], int(mine[-1])
