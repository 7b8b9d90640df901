"""Orbax checkpoints of a run: train state, each process's data-iterator state, and the config.

Layout under ``workdir/checkpoints/<step>/``::

    state/    params, optimizer state and step (OCDBT, each host writes its shards)
    data/     process_<i>-of-<n>.json, every process's iterator state (grain's handler)
    config/   the experiment config as JSON
    model/    config.json: the run's resolved model (Hub format), read back by export, eval and resume

Saves are asynchronous: ``save`` returns once arrays are copied to host
memory, and the files are committed (renamed from a temporary directory) in
the background, so a run killed mid-write leaves the previous step intact.
A save that fails for lack of space or permission (now, or later in the
background) raises one ``WorkdirError`` naming the directory; steps found
damaged at resume are moved to ``workdir/checkpoints_damaged/``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import shutil
import sys

import grain
import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from vtjax import errors
from vtjax.train.state import TrainState

log = logging.getLogger("vtjax.train")

_DATA_STATE_FILE = re.compile(r"process_(\d+)-of-(\d+)\.json")  # grain's name for one process's iterator state
# Messages of storage failures (tensorstore reports errno as "[os_error_code='28']", not as an OSError).
_IO_FAILURE = re.compile(r"os_error_code='(\d+)'|No space left|Disk quota|File too large|Read-only file system|"
                         r"Permission denied")


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


def storage_failure(exc: BaseException) -> str | None:
    """The operating system's reason (e.g. "No space left on device") when ``exc`` or its causes is a
    failed write or read of files; None for anything else."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno is not None:
            return os.strerror(exc.errno)
        match = _IO_FAILURE.search(str(exc))
        if match:
            return os.strerror(int(match.group(1))) if match.group(1) else match.group(0)
        exc = exc.__cause__ or exc.__context__
    return None


class _QuietStorageNoise(logging.Filter):
    """Drops the multi-line ERROR logs of a failed write, which ``Checkpointer`` raises as one line:
    Orbax's own, and asyncio's "Task exception was never retrieved" for the sibling writes of a failed
    one (logged whenever the garbage collector meets those tasks, so sometimes and sometimes not)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        exc = record.exc_info[1] if record.exc_info else None
        failed = storage_failure(exc) if exc is not None else None
        if record.name == "asyncio":
            return not failed
        if "orbax" not in record.pathname:
            return True
        return not (failed or _IO_FAILURE.search(record.getMessage()) or "failed" in record.getMessage())


def _drop_closed_loop_callbacks(unraisable, previous):
    """After a failed read or write, tensorstore completes pending futures into Orbax's already closed
    asyncio loop, and each prints "RuntimeError: Event loop is closed"; the failure itself is reported once."""
    exc = unraisable.exc_value
    if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
        return
    previous(unraisable)


def _install_unraisable_filter():
    """Wraps the current ``sys.unraisablehook`` (once) with ``_drop_closed_loop_callbacks``."""
    if not getattr(sys.unraisablehook, "vtjax_filter", False):
        hook = functools.partial(_drop_closed_loop_callbacks, previous=sys.unraisablehook)
        hook.vtjax_filter = True
        sys.unraisablehook = hook


def _install_asyncio_filter():
    """Adds ``_QuietStorageNoise`` to the asyncio logger once, for the life of the process: the abandoned
    write tasks of a failed save may be collected after the ``Checkpointer`` is closed."""
    asyncio_log = logging.getLogger("asyncio")
    if not any(isinstance(f, _QuietStorageNoise) for f in asyncio_log.filters):
        asyncio_log.addFilter(_QuietStorageNoise())


class Checkpointer:
    """Saves at multiples of ``every_steps`` (or when forced), keeps the newest ``keep``."""

    def __init__(self, workdir: str, *, every_steps: int, keep: int, async_save: bool = True):
        self.every_steps = every_steps
        self.workdir = os.path.abspath(workdir)
        self.directory = os.path.join(self.workdir, "checkpoints")
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save,
                                               create=True)
        with self._storage(None):
            self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers={
                "state": ocp.StandardCheckpointHandler(), "data": grain.checkpoint.CheckpointHandler(),
                "config": ocp.JsonCheckpointHandler(),
                "model": ocp.JsonCheckpointHandler(filename="config.json"),
                "lora_base": ocp.JsonCheckpointHandler(filename="base.json")})
        self._in_flight: int | None = None  # the step whose background write may still be running
        self._failed = False
        self._noise = _QuietStorageNoise()
        logging.getLogger("absl").addFilter(self._noise)
        _install_asyncio_filter()
        _install_unraisable_filter()

    def steps(self) -> list[int]:
        """The committed steps, oldest first."""
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: TrainState, data_state: dict, config: dict, model_config: dict, *,
             lora_base: dict | None = None, force: bool = False) -> bool:
        """Starts saving ``step`` when it is a multiple of ``every_steps`` (or ``force``); returns whether it did.

        ``config``: the experiment config; ``model_config``: the run's resolved model as a Hub config.json;
        ``lora_base``: a LoRA run's record of the base its adapters belong to (``train.adapters``).
        """
        if not force and step % self.every_steps:
            return False
        items = dict(state=ocp.args.StandardSave(state),
                     data=grain.checkpoint.CheckpointSave(_StateSnapshot(data_state)),
                     config=ocp.args.JsonSave(config), model=ocp.args.JsonSave(model_config))
        if lora_base is not None:
            items["lora_base"] = ocp.args.JsonSave(lora_base)
        args = ocp.args.Composite(**items)
        with self._storage(self._in_flight):  # a failure of the previous background write surfaces here
            self.manager.wait_until_finished()
        with self._storage(step):
            self._in_flight = step
            return self.manager.save(step, args=args, force=True)

    def read_config(self, step: int) -> dict:
        """The experiment config saved with ``step``."""
        return self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]

    def read_model_config(self, step: int) -> dict | None:
        """The model's config.json saved with ``step``; None for steps saved before vtjax wrote it."""
        if not os.path.isfile(os.path.join(self.directory, str(step), "model", "config.json")):
            return None
        return self.manager.restore(step, args=ocp.args.Composite(model=ocp.args.JsonRestore()))["model"]

    def read_lora_base(self, step: int) -> dict | None:
        """The record of the base model a LoRA run's ``step`` belongs to; None for a full-model step."""
        if not os.path.isfile(os.path.join(self.directory, str(step), "lora_base", "base.json")):
            return None
        return self.manager.restore(step, args=ocp.args.Composite(lora_base=ocp.args.JsonRestore()))["lora_base"]

    def restore(self, step: int, target: TrainState) -> tuple[TrainState, dict]:
        """The state at ``step`` placed like ``target`` (ShapeDtypeStructs with shardings), and this
        process's data-iterator state.

        A step saved by another number of processes has no state for this process: the data state is
        then ``{"resharded_from": [the saved states in process order]}``, which the iterators map onto
        this layout (``set_state``).
        """
        saved = self.data_states(step)
        if saved and (jax.process_index(), jax.process_count()) not in saved:
            counts = {n for _, n in saved}
            if len(counts) != 1 or sorted(i for i, _ in saved) != list(range(counts.pop())):
                raise ValueError(f"step {step} holds an incomplete set of data states: {sorted(saved)}")
            restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
            return restored["state"], {"resharded_from": [saved[key] for key in sorted(saved)]}
        receiver = _StateReceiver()
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), data=grain.checkpoint.CheckpointRestore(receiver)))
        if receiver.state is None:
            raise ValueError("no data-iterator state was restored")
        return restored["state"], receiver.state

    def data_states(self, step: int) -> dict[tuple[int, int], dict]:
        """{(process, process count): data-iterator state} of every process that saved ``step``."""
        folder = os.path.join(self.directory, str(step), "data")
        out = {}
        for name in os.listdir(folder) if os.path.isdir(folder) else ():
            match = _DATA_STATE_FILE.fullmatch(name)
            if match:
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    out[(int(match[1]), int(match[2]))] = json.load(f)
        return out

    def set_aside(self, steps: list[int]) -> str:
        """Moves damaged ``steps`` out of the checkpoint directory (into ``checkpoints_damaged/``, kept for
        inspection) so that saving those step numbers again works; returns where they went."""
        aside = os.path.join(self.workdir, "checkpoints_damaged")
        if jax.process_index() == 0:
            with self._storage(None):
                os.makedirs(aside, exist_ok=True)
                for step in steps:
                    target = os.path.join(aside, str(step))
                    if os.path.exists(target):
                        shutil.rmtree(target)
                    os.rename(os.path.join(self.directory, str(step)), target)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("vtjax_checkpoints_set_aside")
        self.manager.reload()
        return aside

    def wait(self):
        """Blocks until background writes are committed."""
        with self._storage(self._in_flight):
            self.manager.wait_until_finished()

    def close(self):
        if self._failed:  # the failure is being raised already; what is left to flush would fail the same way
            with contextlib.suppress(Exception):
                self.manager.close()
        else:
            with self._storage(self._in_flight):
                self.manager.wait_until_finished()
            self.manager.close()
        logging.getLogger("absl").removeFilter(self._noise)

    @contextlib.contextmanager
    def _storage(self, step: int | None):
        """Turns a failed write under the checkpoint directory into one ``WorkdirError``."""
        try:
            yield
        except Exception as e:
            reason = storage_failure(e)
            if reason is None:
                raise
            self._failed = True
            what = f"checkpoint step {step}" if step is not None else "checkpoints"
            committed = self._committed_text()
            raise errors.WorkdirError(
                f"could not write {what} under {self.directory}: {reason}. Free space there (or lower "
                f"checkpoint.keep, or use a --workdir on a larger disk) and rerun the same command to "
                f"resume from {committed}") from e

    def _committed_text(self) -> str:
        try:
            latest = self.manager.latest_step()
        except Exception:  # noqa: BLE001  (only decorates the message)
            latest = None
        return f"step {latest}" if latest is not None else "the start (no checkpoint was committed)"
