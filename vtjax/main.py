"""vtjax's entry point: ``python -m vtjax.main --config configs/<experiment>.py[:arg] --workdir DIR``.

Run the same command on every host. Fields are overridden with
``--config.train.lr=2e-5``; a key that does not exist is an error listing the
closest ones. ``config.mode`` picks the trainer from ``TRAINERS``.

Multi-host runs call ``jax.distributed.initialize()`` first: on TPU pod
slices, SLURM and Open MPI it discovers the peers itself; elsewhere set
``JAX_COORDINATOR_ADDRESS=host:port``, ``JAX_NUM_PROCESSES`` and
``JAX_PROCESS_ID`` on every process.
"""

from __future__ import annotations

import logging
import os
import runpy
import sys
from typing import Callable, Mapping

from absl import app, flags
from ml_collections import config_flags

from vtjax.train import grpo, sft
from vtjax import demo
from vtjax import generate as generate_mode
from vtjax.eval import runner as eval_runner
from vtjax.train.config import ConfigError, close_matches, flat_keys

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file, e.g. configs/tiny_sft.py[:arg].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and TensorBoard logs.")

# mode -> trainer(config, workdir). GRPO, evaluation and generation register here as they land.
TRAINERS: dict[str, Callable] = {"sft": sft.run, "grpo": grpo.run}
TRAINERS.update({"eval": eval_runner.run, "generate": generate_mode.run, "demo": demo.run})  # vtjax.eval, make demo


def multihost_env(environ: Mapping[str, str]) -> bool:
    """Whether the environment describes a job of several processes (so jax.distributed is needed)."""
    if environ.get("JAX_COORDINATOR_ADDRESS"):
        return True
    if "," in environ.get("TPU_WORKER_HOSTNAMES", "") or "," in environ.get("TPU_PROCESS_ADDRESSES", ""):
        return True  # a Cloud TPU slice with several hosts
    for key in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        if int(environ.get(key, "1") or 1) > 1:
            return True
    return False


def initialize_distributed(environ: Mapping[str, str] = os.environ) -> None:
    """``jax.distributed.initialize()`` when several processes form the job; no-op otherwise."""
    if not multihost_env(environ):
        return
    import jax  # pylint: disable=import-outside-toplevel

    kwargs = {}
    if environ.get("JAX_NUM_PROCESSES"):
        kwargs["num_processes"] = int(environ["JAX_NUM_PROCESSES"])
    if environ.get("JAX_PROCESS_ID"):
        kwargs["process_id"] = int(environ["JAX_PROCESS_ID"])
    jax.distributed.initialize(**kwargs)


def check_override_keys(argv: list[str]) -> None:
    """Raises ConfigError for a ``--config.a.b=`` override naming no field (lists close matches)."""
    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if spec is None and "--config" in argv[:-1]:
        spec = argv[argv.index("--config") + 1]
    overrides = [a[len("--config."):].split("=", 1)[0] for a in argv if a.startswith("--config.")]
    if spec is None or not overrides:
        return
    path, _, arg = spec.partition(":")
    module = runpy.run_path(path)
    config = module["get_config"](arg) if arg else module["get_config"]()
    keys = set(flat_keys(config))
    for key in overrides:
        if key not in keys and not any(k.startswith(key + ".") for k in keys):
            hints = close_matches(key, config)
            hint = f"; did you mean {', '.join('--config.' + h for h in hints)}?" if hints else ""
            raise ConfigError(f"--config.{key}: {path} has no field {key!r}{hint}")


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        check_override_keys(argv)
        return flags.FLAGS(argv)
    except (ConfigError, flags.Error) as e:
        sys.stderr.write(f"error: {e}\n")
        sys.exit(2)


def _setup_logging() -> None:
    """vtjax's own INFO lines on stderr; the libraries' (Orbax, grain) at WARNING and above."""
    from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel

    absl_logging.set_verbosity(absl_logging.WARNING)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s", "%H:%M:%S"))
    ours = logging.getLogger("vtjax")
    ours.addHandler(handler)
    ours.setLevel(logging.INFO)
    ours.propagate = False


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    _setup_logging()
    config = _CONFIG.value
    if config is None:
        raise app.UsageError("--config is required, e.g. --config configs/tiny_sft.py")
    if _WORKDIR.value is None:
        raise app.UsageError("--workdir is required (checkpoints and TensorBoard logs go there)")
    trainer = TRAINERS.get(config.mode)
    if trainer is None:
        raise app.UsageError(f"mode={config.mode!r} has no trainer; registered modes: {sorted(TRAINERS)}")
    initialize_distributed()
    try:
        result = trainer(config, _WORKDIR.value)
    except ConfigError as e:
        sys.stderr.write(f"error: {e}\n")
        sys.exit(2)
    logging.getLogger("vtjax").info("finished: %s", result)


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
