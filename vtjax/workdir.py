"""Output locations a user chooses: prove the workdir writable up front, and say what an OS error means.

``check_workdir`` runs in ``vtjax.main`` before any mode loads a model, so a
workdir that cannot be written fails in a second, not after an hour of
generation. ``os_error_message`` turns the OS errors a user's environment
causes (full disk, read-only or unwritable location, a file where a
directory should be) into one line with the fix; other errnos are bugs and
get ``None``.

This module imports nothing from vtjax but ``errors``, so every layer can use it.
"""

from __future__ import annotations

import errno
import os
import socket

from vtjax import errors

# errno -> (what happened, what to do).
_ENVIRONMENT_ERRNOS = {
    errno.ENOSPC: ("no space left on the device", "free space on that disk or write to a larger one"),
    errno.EDQUOT: ("disk quota exceeded", "free space on that disk or write to another one"),
    errno.EROFS: ("read-only file system", "choose a writable location"),
    errno.EACCES: ("permission denied", "fix its permissions or choose a location you can write"),
    errno.EPERM: ("operation not permitted", "fix its permissions or choose a location you can write"),
    errno.ENOTDIR: ("a part of the path is a file, not a directory",
                    "rename or remove that file, or choose another location"),
    errno.EEXIST: ("a file is there, not a directory", "rename or remove it, or choose another location"),
    errno.EISDIR: ("a directory where a file was expected", "rename or remove it, or choose another path"),
}


def _file_in_path(path: str) -> str | None:
    """The nearest existing ancestor of ``path`` when it is a file (what makes the path impossible)."""
    parent = os.path.dirname(path)
    while parent and parent != path:
        if os.path.lexists(parent):
            return parent if not os.path.isdir(parent) else None
        path, parent = parent, os.path.dirname(parent)
    return None


def os_error_message(error: BaseException, *, name: str | None = None) -> str | None:
    """One line for an OS error the user's environment caused (ENOSPC, EROFS, EACCES, ...); None otherwise.

    ``name`` is how the line refers to the location (e.g. ``--workdir=/runs/a``); default: the OS's path.
    """
    if not isinstance(error, OSError) or error.errno not in _ENVIRONMENT_ERRNOS:
        return None
    what, fix = _ENVIRONMENT_ERRNOS[error.errno]
    filename = None if error.filename is None else os.fsdecode(error.filename)
    if error.errno == errno.ENOTDIR and filename:
        blocker = _file_in_path(os.path.abspath(filename))
        if blocker:
            what = f"{blocker} is a file, not a directory"
    if error.errno == errno.EEXIST and (not filename or os.path.isdir(filename)):
        what, fix = "already exists", "remove it or choose another location"
    where = name or filename
    if where is None:
        return f"{os.strerror(error.errno)}; {fix}"
    return f"{where}: {what}; {fix}"


def check_workdir(path: str, *, flag: str = "--workdir") -> str:
    """Creates ``path`` if needed and writes, syncs and deletes a probe file in it; returns the absolute path.

    Raises ``WorkdirError`` naming ``flag`` when it is a URL, a file, sits under a file, is read-only,
    unwritable or on a full disk. A real write is the test: ``os.access`` says yes to root on any local directory.
    """
    if "://" in path:
        raise errors.WorkdirError(f"{flag}={path}: vtjax writes through local file paths, not URLs; mount the "
                                  "bucket (gcsfuse, NFS) and give the mounted directory")
    path = os.path.abspath(os.path.expanduser(path))
    probe = os.path.join(path, f".vtjax_write_probe.{socket.gethostname()}.{os.getpid()}")
    try:
        if os.path.lexists(path) and not os.path.isdir(path):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path)
        os.makedirs(path, exist_ok=True)
        try:
            with open(probe, "wb") as f:
                f.write(b"\0" * 4096)
                f.flush()
                os.fsync(f.fileno())  # a full disk often only says so here
        finally:
            if os.path.lexists(probe):
                os.remove(probe)
    except OSError as e:
        message = os_error_message(e, name=f"{flag}={path}") or f"{flag}={path}: {e}; choose another location"
        raise errors.WorkdirError(message) from e
    return path
