"""JAX's persistent compilation cache, kept apart per numerics-relevant environment.

JAX keys a cached executable by the program, the jax/jaxlib versions, the
compile options and the ``XLA_FLAGS`` it saw, but it leaves some settings out
of the key on purpose (``--xla_force_host_platform_device_count``, dump
flags), and the flags it reads are the ones in the environment at compile
time, not necessarily those the backend started with. A cache directory
shared by runs with different flags (a pod's shared disk, a test suite whose
processes set different kernels) can then hand one run an executable built
for another. ``namespace_cache_dir`` moves the cache a user enabled
(``JAX_COMPILATION_CACHE_DIR`` or ``jax_compilation_cache_dir``) into a
subdirectory named by a fingerprint of everything below, so only runs with
the same flags, versions, process count and devices ever share executables:
a resumed run loads exactly what the uninterrupted run would have compiled.

This module imports nothing from vtjax, so any entry point can call it.
"""

from __future__ import annotations

import hashlib
import os
from typing import Mapping

import jax
import jaxlib

# Environment variables whose values can change what XLA compiles (flags parsed by the backends).
NUMERICS_ENV = ("XLA_FLAGS", "LIBTPU_INIT_ARGS", "JAX_PLATFORMS", "JAX_ENABLE_X64", "JAX_DEFAULT_MATMUL_PRECISION")


def numerics_fingerprint(environ: Mapping[str, str], *, process_count: int, device_kinds: list[str]) -> str:
    """16 hex digits over the flag tokens (order-insensitive), versions, process count and device kinds."""
    parts = [f"jax={jax.__version__}", f"jaxlib={jaxlib.__version__}", f"processes={process_count}",
             "devices=" + ",".join(device_kinds)]
    for name in NUMERICS_ENV:
        tokens = sorted(environ.get(name, "").split())
        parts.append(f"{name}=" + " ".join(tokens))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def namespace_cache_dir(environ: Mapping[str, str] = os.environ) -> str | None:
    """Points an enabled persistent cache at ``<dir>/vtjax-<fingerprint>``; returns that path (None: no cache).

    Call it once, after ``jax.distributed.initialize()`` and before anything is compiled.
    """
    base = jax.config.jax_compilation_cache_dir
    if not base:
        return None
    if os.path.basename(os.path.normpath(base)).startswith("vtjax-"):
        return base  # already namespaced (a nested call)
    fingerprint = numerics_fingerprint(environ, process_count=jax.process_count(),
                                       device_kinds=sorted({d.device_kind for d in jax.devices()}) +
                                       [str(jax.device_count())])
    path = os.path.join(base, f"vtjax-{fingerprint}")
    jax.config.update("jax_compilation_cache_dir", path)
    return path  # the training loop logs it once the config is valid (a config error prints one line only)
