"""vtjax's entry point: ``python -m vtjax.main --config configs/<experiment>.py[:arg] --workdir DIR``.

Run the same command on every host. Fields are overridden with
``--config.train.lr=2e-5``; a key that does not exist is an error listing the
closest ones. ``config.mode`` picks the trainer from ``TRAINERS``; the
workdir is created and proven writable before any mode starts.

An error the user can fix (``vtjax.errors.UserError``, or an OS error of the
environment: full disk, read-only or unwritable location, a file where a
directory should be) ends the run with exit status 2 and one line on stderr,
``error: <what is wrong and how to fix it>``; ``--verbose`` adds the
traceback. Any other exception is a bug in vtjax and keeps its traceback.

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
import threading
import traceback
from typing import Callable, Mapping, NoReturn

from absl import app, flags
from ml_collections import config_flags

from vtjax import demo, errors
from vtjax.compile_cache import namespace_cache_dir
from vtjax import generate as generate_mode
from vtjax.eval import runner as eval_runner
from vtjax.train import grpo, sft
from vtjax.train.config import ConfigError, close_matches, flat_keys
from vtjax.workdir import check_workdir, os_error_message

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file, e.g. configs/tiny_sft.py[:arg].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and TensorBoard logs.")
_VERBOSE = flags.DEFINE_bool("verbose", False, "On an error you can fix, print its traceback too (else one line).")
EXIT_USER_ERROR = 2  # exit status of a run ended by an error the user can fix

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


# --- Errors the user can fix -------------------------------------------------------------


def user_error_message(error: BaseException) -> str | None:
    """One line for an error the user can fix, None for a bug.

    A ``UserError``, or an OSError the environment caused (ENOSPC, EROFS, EACCES, ENOTDIR, ...), found
    on the error itself or down its explicit ``raise ... from`` chain.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, errors.UserError):
            return " ".join(str(error).split()) or type(error).__name__
        message = os_error_message(error)
        if message is not None:
            return message
        error = error.__cause__
    return None


def _verbose_requested(argv: list[str]) -> bool:
    """``--verbose`` before absl has parsed it (config-file errors happen during parsing)."""
    return any(a in ("--verbose", "--verbose=true", "--verbose=True", "--verbose=1") for a in argv)


def _exit_user_error(message: str, error: BaseException | None, verbose: bool) -> NoReturn:
    """Prints ``error: message`` (after the traceback when verbose) and exits 2; libraries stay quiet after."""
    if verbose and error is not None:
        traceback.print_exception(error)
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    if not verbose:
        _silence_stderr()
    sys.exit(EXIT_USER_ERROR)


def _silence_stderr() -> None:
    """No more output after the one line: background threads and atexit hooks (Orbax, absl) would repeat it."""
    logging.disable(logging.CRITICAL)
    threading.excepthook = lambda args: None
    sys.unraisablehook = lambda unraisable: None
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stderr.fileno())  # C++ logs (XLA, tensorstore) write to fd 2 directly
    os.close(devnull)


# --- Flags and config file -----------------------------------------------------------------


def _config_spec(argv: list[str]) -> str | None:
    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if spec is None and "--config" in argv[:-1]:
        spec = argv[argv.index("--config") + 1]
    return spec


def load_config_file(spec: str):
    """Runs the experiment file of ``path[:arg]`` and returns ``get_config([arg])``; ConfigError if it cannot."""
    path, *arg = spec.split(":", 1)
    if not os.path.isfile(path):
        raise ConfigError(f"--config={spec}: {path} is not a file; give an experiment file such as "
                          "configs/tiny_sft.py (paths are relative to the current directory)")
    try:
        get_config = runpy.run_path(path).get("get_config")
        if get_config is None:
            raise ConfigError(f"--config={spec}: {path} defines no get_config()")
        config = get_config(*arg)
    except ConfigError:
        raise
    except Exception as e:  # the experiment file is the user's code
        message = " ".join(str(e).split())
        raise ConfigError(f"--config={spec}: {path} failed: {type(e).__name__}: {message}") from e
    if config is None:
        raise ConfigError(f"--config={spec}: get_config() in {path} returned None; return the ConfigDict")
    return config


def check_override_keys(argv: list[str]) -> None:
    """Raises ConfigError for a missing or failing ``--config`` file or a ``--config.a.b=`` naming no field."""
    spec = _config_spec(argv)
    if spec is None:
        return
    config = load_config_file(spec)
    path = spec.split(":", 1)[0]
    overrides = [a[len("--config."):].split("=", 1)[0] for a in argv if a.startswith("--config.")]
    keys = set(flat_keys(config)) if overrides else set()
    for key in overrides:
        if key not in keys and not any(k.startswith(key + ".") for k in keys):
            hints = close_matches(key, config)
            hint = f"; did you mean {', '.join('--config.' + h for h in hints)}?" if hints else ""
            raise ConfigError(f"--config.{key}: {path} has no field {key!r}{hint}")


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        check_override_keys(argv)
        return flags.FLAGS(argv)
    except ConfigError as e:
        _exit_user_error(str(e), e, _verbose_requested(argv))
    except flags.Error as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        message = lines[0] if len(lines) < 2 else f"{lines[0]} {lines[-1]}"
        _exit_user_error(message, e, _verbose_requested(argv))


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


# --- Entry point ---------------------------------------------------------------------------


def run_mode(config, workdir: str | None):
    """Checks the flags and the workdir, then runs ``config.mode``'s trainer; UserErrors for what is wrong."""
    if config is None:
        raise ConfigError("--config is required, e.g. --config configs/tiny_sft.py")
    if workdir is None:
        raise ConfigError("--workdir is required (checkpoints, logs and outputs go there)")
    trainer = TRAINERS.get(config.mode)
    if trainer is None:
        raise ConfigError(f"mode={config.mode!r} has no trainer; registered modes: {sorted(TRAINERS)}")
    check_workdir(workdir)  # before any model is loaded: an unusable workdir fails in a second
    initialize_distributed()
    namespace_cache_dir()  # a shared persistent cache never hands this run another environment's executable
    return trainer(config, workdir)


def main(argv: list[str]) -> None:
    _setup_logging()
    try:
        if len(argv) > 1:
            raise ConfigError(f"unexpected arguments {argv[1:]}; set fields with --config.a.b=value")
        result = run_mode(_CONFIG.value, _WORKDIR.value)
    except Exception as e:  # pylint: disable=broad-except
        message = user_error_message(e)
        if message is None:
            raise  # a bug in vtjax: the traceback is the report
        _exit_user_error(message, e, _VERBOSE.value)
    logging.getLogger("vtjax").info("finished: %s", result)


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
