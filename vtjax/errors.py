"""The errors a user can cause, one type per concern.

Every entry point (``python -m vtjax.main``, ``python -m vtjax.convert``)
catches ``UserError`` and exits with status 2 after one line: the message,
which names the problem and the fix. ``--verbose`` adds the traceback.
Anything else escaping an entry point is a bug in vtjax.

This module imports nothing from vtjax, so every layer can raise these.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; ``str(error)`` is one line naming the problem and the fix."""


class ConfigError(UserError, ValueError):
    """A config field is unknown, missing or inconsistent; the message names the field the user set."""


class DataError(UserError, ValueError):
    """Records, videos, images, prompts or a tokenizer that cannot be used; the message says which and why."""


class CheckpointError(UserError, ValueError):
    """A checkpoint (training or converted) is missing, damaged, unsafe or belongs to another run."""


class WorkdirError(UserError, OSError):
    """An output location cannot be used: not a directory, not writable, out of space, or overlapping the input."""


class ConversionError(UserError, ValueError):
    """A checkpoint conversion cannot proceed or its result failed verification."""


class TrainingError(UserError, RuntimeError):
    """Training cannot go on (e.g. a non-finite loss with ``train.on_nonfinite='stop'``)."""
