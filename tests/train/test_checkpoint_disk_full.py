"""A save that cannot be written (here: files capped at 400 kB, so writes fail with EFBIG as on a full disk)
ends the run with one line naming the checkpoint directory and the fix, exit status 2."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import resource
import signal
import subprocess
import sys

import pytest

from tests.train.conftest import FAST_COMPILE_FLAGS, REPO, TINY_CONFIG
from vtjax.train.checkpoint import Checkpointer

FILE_LIMIT = 400_000  # bytes; the tiny state's largest OCDBT file is ~1 MB, logs stay far below


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))


@pytest.mark.parametrize("async_save", [True, False])
def test_a_failed_save_is_one_workdir_error(tmp_path, async_save):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}  # no cache writes
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {FAST_COMPILE_FLAGS}".strip()
    cmd = [sys.executable, "-m", "vtjax.main", f"--config={TINY_CONFIG}", f"--workdir={tmp_path}",
           "--config.train.num_steps=6", "--config.checkpoint.every_steps=2", "--config.log.every_steps=2",
           f"--config.checkpoint.async_save={async_save}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, preexec_fn=_limit_file_size, capture_output=True, text=True,
                          timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert "Traceback" not in out and "Event loop is closed" not in out, out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out[-3000:]
    # Which save hits the cap first depends on how Orbax splits the OCDBT data into files (it varies with
    # the writer threads), so the failing step is read from the message and checked against the disk.
    match = re.search(rf"could not write checkpoint step (\d+) under {re.escape(str(tmp_path / 'checkpoints'))}: "
                      r"File too large", errors[0])
    assert match, errors[0]
    failed = int(match.group(1))
    committed = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert failed in (2, 4, 6) and all(step < failed for step in committed), (failed, committed)
    assert "Free space there" in errors[0]
    resume_from = f"resume from step {committed[-1]}" if committed else "resume from the start"
    assert resume_from in errors[0], errors[0]
    assert len(out.splitlines()) < 20, out  # a few step lines and the error, not 1,600 lines of tracebacks


def test_abandoned_writes_of_a_failed_save_are_not_logged(tmp_path, caplog):
    """When one OCDBT write fails, its sibling write tasks fail too and nobody awaits them; asyncio logs
    each as "Task exception was never retrieved" whenever the garbage collector meets it (the CI failure
    this test pins). After a Checkpointer exists those storage failures are dropped, other ones are not."""
    Checkpointer(str(tmp_path), every_steps=1, keep=1).close()

    async def fail(message):
        raise ValueError(message)

    loop = asyncio.new_event_loop()
    tasks = [loop.create_task(fail("Failed writing: \"d/6dfb\": File too large [os_error_code='27']")),
             loop.create_task(fail("a bug that must stay visible"))]
    loop.run_until_complete(asyncio.sleep(0.01))
    loop.close()
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        del tasks
        gc.collect()
    unretrieved = [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert len(unretrieved) == 1, [r.getMessage() for r in caplog.records]
    assert "a bug that must stay visible" in unretrieved[0].getMessage()
