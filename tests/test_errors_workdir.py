"""The workdir probe and the one-line messages for OS errors, on errors the kernel really raises."""

from __future__ import annotations

import errno
import os

import pytest

from vtjax import errors
from vtjax.main import user_error_message
from vtjax.workdir import check_workdir, os_error_message


def _raised(fn) -> OSError:
    with pytest.raises(OSError) as err:
        fn()
    return err.value


def test_check_workdir_creates_and_leaves_nothing(tmp_path):
    path = tmp_path / "a" / "b"
    assert check_workdir(str(path)) == str(path)
    assert path.is_dir() and list(path.iterdir()) == []
    assert check_workdir(str(path)) == str(path)  # an existing, writable directory is fine


def test_check_workdir_refuses_files(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(errors.WorkdirError, match=r"--workdir=.*/f: a file is there, not a directory"):
        check_workdir(str(tmp_path / "f"))
    with pytest.raises(errors.WorkdirError, match=r"/f is a file, not a directory") as err:
        check_workdir(str(tmp_path / "f" / "g" / "run"), flag="--out")
    assert str(err.value).startswith(f"--out={tmp_path / 'f' / 'g' / 'run'}: ")
    assert isinstance(err.value, OSError)  # WorkdirError is an OSError too


def test_check_workdir_refuses_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(errors.WorkdirError, match=r"--workdir=gs://bucket/run: .*mount the bucket"):
        check_workdir("gs://bucket/run")
    assert list(tmp_path.iterdir()) == []  # no local ./gs: directory pretending to be the bucket


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_device_message():
    def write_full():
        with open("/dev/full", "wb") as f:
            f.write(b"x")
            f.flush()

    e = _raised(write_full)
    assert e.errno == errno.ENOSPC
    assert os_error_message(e) == "No space left on device; free space on that disk or write to a larger one"


def test_messages_of_real_errors(tmp_path):
    (tmp_path / "f").write_text("x")
    notdir = _raised(lambda: open(tmp_path / "f" / "sub", "w"))
    assert os_error_message(notdir) == (f"{tmp_path / 'f' / 'sub'}: {tmp_path / 'f'} is a file, not a directory; "
                                        "rename or remove that file, or choose another location")
    exists = _raised(lambda: os.mkdir(tmp_path / "f"))
    assert os_error_message(exists).startswith(f"{tmp_path / 'f'}: a file is there, not a directory")
    exists_dir = _raised(lambda: os.mkdir(tmp_path))
    assert os_error_message(exists_dir).startswith(f"{tmp_path}: already exists")
    isdir = _raised(lambda: open(tmp_path, "w"))
    assert os_error_message(isdir).startswith(f"{tmp_path}: a directory where a file was expected")
    missing = _raised(lambda: open(tmp_path / "missing"))
    assert os_error_message(missing) is None  # not the environment's doing: a bug or a checked input


def test_read_only_and_permission_messages():
    # Root cannot be refused by modes and no read-only mount exists here: the errnos as the OS reports them.
    ro = OSError(errno.EROFS, os.strerror(errno.EROFS), "/mnt/ro/run/checkpoints")
    assert os_error_message(ro) == "/mnt/ro/run/checkpoints: read-only file system; choose a writable location"
    denied = PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/runs/x")
    assert os_error_message(denied, name="--workdir=/runs/x").startswith("--workdir=/runs/x: permission denied;")


def test_user_error_message_follows_explicit_causes():
    try:
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/w/checkpoints/3")
        except OSError as e:
            raise RuntimeError("async save failed") from e
    except RuntimeError as wrapped:
        assert user_error_message(wrapped) == "/w/checkpoints/3: no space left on the device; free space on " \
                                              "that disk or write to a larger one"
    assert user_error_message(errors.DataError("bad\nrecord  here")) == "bad record here"
    assert user_error_message(RuntimeError("a bug")) is None
    try:
        try:
            raise OSError(errno.ENOSPC, "full")
        except OSError:
            raise KeyError("bug while handling it")  # implicit context only: still a bug  # noqa: B904
    except KeyError as bug:
        assert user_error_message(bug) is None
