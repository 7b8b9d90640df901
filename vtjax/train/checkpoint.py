"""Orbax checkpoints of a run: train state, each process's data-iterator state, and the config.

Layout under ``workdir/checkpoints/<step>/``::

    state/    params, optimizer state and step (OCDBT, each host writes its shards)
    data/     process_<i>-of-<n>.json, every process's iterator state (grain's handler)
    config/   the experiment config as JSON

Saves are asynchronous: ``save`` returns once arrays are copied to host
memory, and the files are committed (renamed from a temporary directory) in
the background, so a run killed mid-write leaves the previous step intact.
"""

from __future__ import annotations

import json
import os

import grain
import orbax.checkpoint as ocp

from vtjax.train.state import TrainState


class _StateSnapshot:
    """A data-iterator state captured when ``save`` is called (the iterator moves on meanwhile)."""

    def __init__(self, state: dict):
        self._bytes = json.dumps(state).encode()

    def get_state(self) -> bytes:
        return self._bytes


class _StateReceiver:
    """Receives the stored iterator state from grain's restore handler."""

    state: dict | None = None

    def set_state(self, state: bytes):
        self.state = json.loads(state.decode() if isinstance(state, bytes) else state)

    def start_prefetch(self):
        pass


class Checkpointer:
    """Saves at multiples of ``every_steps`` (or when forced), keeps the newest ``keep``."""

    def __init__(self, workdir: str, *, every_steps: int, keep: int, async_save: bool = True):
        self.every_steps = every_steps
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save,
                                               create=True)
        self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: TrainState, data_state: dict, config: dict, *, force: bool = False) -> bool:
        """Starts saving ``step`` when it is a multiple of ``every_steps`` (or ``force``); returns whether it did."""
        if not force and step % self.every_steps:
            return False
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=grain.checkpoint.CheckpointSave(_StateSnapshot(data_state)),
            config=ocp.args.JsonSave(config))
        return self.manager.save(step, args=args, force=True)

    def restore(self, step: int, target: TrainState) -> tuple[TrainState, dict]:
        """The state at ``step`` placed like ``target`` (ShapeDtypeStructs with shardings), and this
        process's data-iterator state."""
        receiver = _StateReceiver()
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), data=grain.checkpoint.CheckpointRestore(receiver)))
        return restored["state"], receiver.state

    def wait(self):
        """Blocks until background writes are committed."""
        self.manager.wait_until_finished()

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()
