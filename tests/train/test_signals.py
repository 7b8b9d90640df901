"""StopFlag: the first Ctrl-C requests a stop (no KeyboardInterrupt), the second gets the default action."""

from __future__ import annotations

import os
import signal
import time

from vtjax.train.signals import StopFlag


def test_first_ctrl_c_requests_a_stop_and_the_second_gets_the_default_action():
    previous = signal.getsignal(signal.SIGINT)
    with StopFlag() as flag:
        os.kill(os.getpid(), signal.SIGINT)  # handled before the next bytecode: no KeyboardInterrupt
        for _ in range(1000):
            if flag.requested:
                break
            time.sleep(0.001)
        assert flag.requested
        assert signal.getsignal(signal.SIGINT) is signal.SIG_DFL  # a second Ctrl-C ends the process at once
    assert signal.getsignal(signal.SIGINT) is previous
