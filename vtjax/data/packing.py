"""First-fit packing of whole examples into the fixed-size rows of one batch (pure Python).

A packed batch has ``rows`` rows of ``budget`` tokens. Each example goes into
the first row with room for all of it; an example never splits. The order of
examples within a row is the order they were placed in, so a batch is a
deterministic function of the example stream.
"""

from __future__ import annotations


class RowFiller:
    """The rows of one packed batch being filled."""

    def __init__(self, rows: int, budget: int):
        if rows < 1 or budget < 1:
            raise ValueError(f"packing needs at least one row and one token per row; got {rows=}, {budget=}")
        self.budget = budget
        self.rows: list[list] = [[] for _ in range(rows)]  # the examples of each row, in placing order
        self.free = [budget] * rows  # tokens left in each row

    def place(self, example, length: int) -> bool:
        """Puts ``example`` (``length`` tokens) into the first row with room; False when none has room."""
        if length > self.budget:
            raise ValueError(f"an example of {length} tokens cannot fit a row of {self.budget}")
        for r, free in enumerate(self.free):
            if length <= free:
                self.rows[r].append(example)
                self.free[r] -= length
                return True
        return False

    @property
    def full(self) -> bool:
        """No row has room for even one more token."""
        return max(self.free) == 0

    @property
    def empty(self) -> bool:
        return not any(self.rows)

    @property
    def every_row_used(self) -> bool:
        return all(self.rows)

    @property
    def padding_fraction(self) -> float:
        """Share of the batch's token slots that hold no example."""
        return sum(self.free) / (self.budget * len(self.rows))
