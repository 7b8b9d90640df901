"""One device mesh with axes ('data', 'fsdp', 'tensor') and one table of logical-axis rules.

Model parameters carry logical axis names (``param_logical_axes``); the rules
below map each name to a mesh axis. A dimension that the mesh axis does not
divide evenly is replicated instead (e.g. 2 kv heads on a tensor axis of 4).
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")  # mesh axes the examples (and their vision rows, and sample rows) are split over

# logical axis -> mesh axis (or axes, or None = replicated)
LOGICAL_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", ("data", "fsdp")),  # examples split over both data-parallel axes
    ("embed", "fsdp"),  # model width: FSDP shards params along it
    ("mlp", "tensor"),  # MLP hidden width: tensor parallel
    ("heads", "tensor"),  # query heads: tensor parallel
    ("kv_heads", "tensor"),  # shared K/V heads: tensor parallel where they divide
    ("vocab", "tensor"),  # embedding rows / logits columns
    ("head_dim", None),  # never split inside a head
    ("layers", None),  # the scanned layer axis stays whole
    ("patch", None),  # pixel-row width of the patch embedding
    ("length", None),  # sequence positions
)


def make_mesh(data: int = 1, fsdp: int = -1, tensor: int = 1,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh of the given axis sizes; one size may be -1 to take the remaining devices."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = {"data": data, "fsdp": fsdp, "tensor": tensor}
    fill = [k for k, v in sizes.items() if v == -1]
    if len(fill) > 1:
        raise ValueError(f"only one mesh axis may be -1; got {fill}")
    for name, size in sizes.items():
        if size == 0 or size < -1:
            raise ValueError(f"mesh.{name}={size} must be positive or -1")
    known = math.prod(v for v in sizes.values() if v != -1)
    if fill:
        if len(devices) % known:
            raise ValueError(f"mesh sizes {sizes} do not divide the {len(devices)} devices")
        sizes[fill[0]] = len(devices) // known
    if math.prod(sizes.values()) != len(devices):
        raise ValueError(f"mesh sizes {sizes} multiply to {math.prod(sizes.values())}, "
                         f"but there are {len(devices)} devices")
    grid = np.asarray(devices).reshape([sizes[a] for a in MESH_AXES])
    return Mesh(grid, MESH_AXES)


def spec_for(logical: PartitionSpec | Sequence[str | None], shape: Sequence[int], mesh: Mesh,
             rules=LOGICAL_RULES) -> PartitionSpec:
    """The mesh PartitionSpec of one array with logical axes ``logical`` and ``shape``."""
    table = dict(rules)
    used: set[str] = set()
    out = []
    for name, dim in zip(tuple(logical), shape, strict=True):
        target = table.get(name) if name is not None else None
        axes = (target,) if isinstance(target, str) else tuple(target or ())
        axes = tuple(a for a in axes if a not in used and mesh.shape[a] > 1)
        size = math.prod(mesh.shape[a] for a in axes)
        if not axes or dim % size:
            out.append(None)
            continue
        used.update(axes)
        out.append(axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*out)


def shardings_for(logical_specs, shapes, mesh: Mesh, rules=LOGICAL_RULES):
    """NamedSharding for every leaf of ``shapes`` given its logical PartitionSpec."""
    is_spec = lambda x: isinstance(x, PartitionSpec)  # noqa: E731
    return jax.tree_util.tree_map(
        lambda spec, s: NamedSharding(mesh, spec_for(spec, s.shape, mesh, rules)),
        logical_specs, shapes, is_leaf=is_spec)
