"""Wall-clock seconds of the phases of one training step (rollout prefill / decode, rewards, update, ...)."""

from __future__ import annotations

import contextlib
import time


class PhaseClock:
    """Accumulates seconds per named phase; a phase may be entered several times in one step.

    Phases that run device programs must wait for them inside the block (``jax.block_until_ready``),
    or their time lands in whichever phase first reads the result.
    """

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(**{phase: time.perf_counter() - start})

    def add(self, **seconds: float):
        for phase, value in seconds.items():
            self.seconds[phase] = self.seconds.get(phase, 0.0) + float(value)

    def total(self) -> float:
        return sum(self.seconds.values())

    def scalars(self) -> dict[str, float]:
        """``<phase>_s`` and ``<phase>_share`` (of the summed phases) for every phase seen."""
        total = max(self.total(), 1e-9)
        out = {}
        for phase, value in self.seconds.items():
            out[f"{phase}_s"] = value
            out[f"{phase}_share"] = value / total
        return out
