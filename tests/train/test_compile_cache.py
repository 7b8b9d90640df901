"""A persistent compilation cache is shared only by runs whose numerics-relevant environment matches.

JAX leaves some flags out of its cache key (``--xla_force_host_platform_device_count``), so a cache
directory shared by differently configured runs could hand one run another's executable.
``vtjax.main`` moves an enabled cache into ``<dir>/vtjax-<fingerprint>``.
"""

from __future__ import annotations

import os

from tests.train.conftest import run_main
from vtjax.compile_cache import numerics_fingerprint

CPU8 = {"process_count": 1, "device_kinds": ["cpu", "8"]}


def test_fingerprint_follows_flags_devices_and_processes_not_flag_order():
    a = numerics_fingerprint({"XLA_FLAGS": "--xla_a=1 --xla_b=2"}, **CPU8)
    assert a == numerics_fingerprint({"XLA_FLAGS": " --xla_b=2  --xla_a=1"}, **CPU8)
    assert a != numerics_fingerprint({"XLA_FLAGS": "--xla_a=1 --xla_b=3"}, **CPU8)
    # the device count JAX keeps out of its own key
    assert a != numerics_fingerprint({"XLA_FLAGS": "--xla_a=1 --xla_b=2 --xla_force_host_platform_device_count=4"},
                                     **CPU8)
    assert a != numerics_fingerprint({"XLA_FLAGS": "--xla_a=1 --xla_b=2"}, process_count=2, device_kinds=["cpu", "8"])
    assert a != numerics_fingerprint({"XLA_FLAGS": "--xla_a=1 --xla_b=2"}, process_count=1, device_kinds=["cpu", "4"])


def _entries(directory) -> dict[str, int]:
    """Cache subdirectory -> number of cached executables; '' counts files at the top."""
    out = {"": sum(1 for e in os.scandir(directory) if e.is_file())}
    out.update({e.name: len(os.listdir(e.path)) for e in os.scandir(directory) if e.is_dir()})
    return out


def test_runs_with_other_kernels_never_share_executables(tmp_path):
    cache = tmp_path / "cache"
    overrides = {"train.num_steps": 1, "checkpoint.every_steps": 1}
    runs = {"multi_thread": "--xla_force_host_platform_device_count=8",
            "single_thread": "--xla_force_host_platform_device_count=8 --xla_cpu_multi_thread_eigen=false"}
    for name, flags in runs.items():
        proc = run_main(tmp_path / name, overrides, env={"XLA_FLAGS": flags, "JAX_COMPILATION_CACHE_DIR": str(cache)})
        assert proc.returncode == 0, proc.output[-3000:]
        assert f"compilation cache: {cache}{os.sep}vtjax-" in proc.output
    entries = _entries(cache)
    assert entries.pop("") == 0  # nothing written where both runs would read it
    assert len(entries) == 2 and all(n > 0 for n in entries.values()), entries
    assert all(name.startswith("vtjax-") for name in entries)
