"""Row packing (vtjax.data.packing.pack_rows), worked by hand."""

import pytest

from vtjax.data.packing import pack_rows


def test_oldest_first_then_longest_first_into_the_first_row_with_room():
    # Entry 0 (the oldest, 3 tokens) goes first into row 0. Then by length: 4 (7) -> row 0 (10 - 3 = 7 free,
    # now 0); 1 (6) -> row 1 (4 free); 3 (5) fits neither row (0, 4); 2 (4) -> row 1 (0 free); 5 (1) nowhere.
    assert pack_rows([3, 6, 4, 5, 7, 1], rows=2, budget=10) == [[0, 4], [1, 2]]


def test_ties_keep_stream_order_and_short_entries_fill_gaps():
    # 0 (5) row 0; then 1, 2 (4 each, in stream order): 1 -> row 0 (1 left), 2 -> row 1; 3 (1) -> row 0.
    assert pack_rows([5, 4, 4, 1], rows=2, budget=10) == [[0, 1, 3], [2]]
    assert pack_rows([], rows=3, budget=8) == [[], [], []]
    assert pack_rows([8, 8], rows=3, budget=8) == [[0], [1], []]  # a row left empty shows


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="an example of 9 tokens cannot fit a row of 8"):
        pack_rows([2, 9], rows=2, budget=8)
    with pytest.raises(ValueError, match="at least one row"):
        pack_rows([1], rows=0, budget=8)
