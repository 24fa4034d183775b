"""The one Markdown table renderer."""

from __future__ import annotations

import pytest

from validation.markdown import row, table


def test_a_table_is_header_separator_and_rows() -> None:
    assert table(("a", "b"), [(1, "x"), ("–", 2.5)]) == ["| a | b |", "|---|---|", "| 1 | x |", "| – | 2.5 |"]
    assert table(("only",), []) == ["| only |", "|---|"]
    assert row(()) == "|  |"


def test_a_row_that_does_not_fit_the_header_is_refused() -> None:
    with pytest.raises(ValueError, match="a table row has 3 cells, the header 2"):
        table(("a", "b"), [(1, 2, 3)])
