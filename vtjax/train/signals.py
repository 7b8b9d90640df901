"""Stop requests for the training loops: SIGTERM (preemption) and Ctrl-C (SIGINT).

Either signal sets ``requested``; the loop notices it at the next step
boundary, saves a checkpoint of the last completed step and returns. After a
first Ctrl-C, SIGINT gets the operating system's default action back, so a
second Ctrl-C ends the process at once (committed checkpoints stay intact:
Orbax writes each step to a temporary directory and renames it when done).
"""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger("vtjax.train")


class StopFlag:
    """Context manager that installs the handlers (main thread only) and restores the previous ones."""

    def __init__(self):
        self.requested = False
        self._previous: dict[int, object] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        del frame
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C exits immediately
            log.warning("Ctrl-C: saving a checkpoint and stopping after the current step "
                        "(press Ctrl-C again to exit at once without saving)")
        else:
            log.warning("SIGTERM: saving a checkpoint and stopping after the current step")
        self.requested = True

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            if previous is not None:  # None: a handler not installed from Python, nothing to put back
                signal.signal(sig, previous)
        self._previous = {}
