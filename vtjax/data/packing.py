"""Packing whole examples into the fixed-size rows of one batch (pure Python).

A packed batch has ``rows`` rows of ``budget`` tokens. The packer draws from a
pool of examples (the ones held back from earlier batches, oldest first, then
new ones from the stream): the oldest goes in first, so no example waits for
ever; the others follow longest first, each into the first row with room for
all of it (first-fit decreasing), so short examples fill the gaps the long
ones leave. An example never splits. The result is a deterministic function of
the pool.
"""

from __future__ import annotations

from collections.abc import Sequence


def pack_rows(lengths: Sequence[int], rows: int, budget: int) -> list[list[int]]:
    """The pool entries each row takes, in placing order; entries that fit nowhere are left out.

    Args:
      lengths: the token count of each pool entry, oldest first.
      rows, budget: the batch's rows and the tokens each holds.
    """
    if rows < 1 or budget < 1:
        raise ValueError(f"packing needs at least one row and one token per row; got {rows=}, {budget=}")
    too_long = [n for n in lengths if n > budget]
    if too_long:
        raise ValueError(f"an example of {too_long[0]} tokens cannot fit a row of {budget}")
    free = [budget] * rows
    placed: list[list[int]] = [[] for _ in range(rows)]
    order = sorted(range(1, len(lengths)), key=lambda i: (-lengths[i], i))
    for i in ([0] if lengths else []) + order:
        for r in range(rows):
            if lengths[i] <= free[r]:
                placed[r].append(i)
                free[r] -= lengths[i]
                break
    return placed
