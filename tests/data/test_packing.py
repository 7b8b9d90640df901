"""First-fit row filling (vtjax.data.packing), worked by hand."""

import pytest

from vtjax.data.packing import RowFiller


def test_first_fit_puts_each_example_in_the_first_row_with_room():
    filler = RowFiller(rows=2, budget=10)
    placed = [filler.place(name, n) for name, n in [("a", 6), ("b", 5), ("c", 4), ("d", 3), ("e", 2)]]
    # a -> row 0 (4 left); b -> row 1 (5 left); c -> row 0 (0 left); d -> row 1 (2 left); e -> row 1 (0 left)
    assert placed == [True] * 5 and filler.rows == [["a", "c"], ["b", "d", "e"]]
    assert filler.full and filler.every_row_used and filler.padding_fraction == 0.0
    assert not filler.place("f", 1)


def test_an_example_that_fits_no_row_is_refused_and_empty_rows_show():
    filler = RowFiller(rows=3, budget=8)
    assert filler.empty and filler.place("a", 7) and filler.place("b", 7)
    assert not filler.every_row_used and filler.place("c", 8)
    assert filler.rows == [["a"], ["b"], ["c"]] and not filler.place("d", 2)  # 1 + 1 + 0 tokens left
    assert filler.padding_fraction == pytest.approx(2 / 24) and not filler.full
    with pytest.raises(ValueError, match="cannot fit a row of 8"):
        filler.place("e", 9)
    with pytest.raises(ValueError, match="at least one row"):
        RowFiller(rows=0, budget=8)
