"""The one rule for padded sizes: every static shape of a batch is a bucket of this series.

A jitted program compiles once per distinct input shape, so text lengths,
vision patch counts and frame sizes are rounded up to a few sizes: m * 2^k
with m in {4, 5, 6, 7} (four steps per octave, so at most a fifth of a padded
size is padding), or the smallest size of a list the user fixed.
"""

from __future__ import annotations

from collections.abc import Sequence


def bucket_size(n: int, minimum: int = 16, buckets: Sequence[int] | None = None) -> int:
    """The padded size of ``n``: the smallest listed bucket >= n, else the smallest m * 2^k >= max(n, minimum).

    Args:
      n: the real size.
      minimum: the smallest size the series returns (ignored with ``buckets``).
      buckets: fixed sizes to choose from; ValueError when n exceeds the largest.
    """
    if buckets:
        for b in sorted(buckets):
            if b >= n:
                return int(b)
        raise ValueError(f"size {n} exceeds the largest bucket {max(buckets)}; add a larger bucket.")
    if n <= minimum:
        return int(minimum)
    power = 1 << max(int(n - 1).bit_length() - 3, 0)  # 2^k with 4 * 2^k <= n-1 < 8 * 2^k
    for m in (4, 5, 6, 7, 8):
        if m * power >= n:
            return m * power
    raise AssertionError("unreachable")
