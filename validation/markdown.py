"""The one Markdown table renderer of validation/: every report's table goes through :func:`table`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def row(cells: Iterable[object]) -> str:
    """``| a | b |``: the cells as given (formatted by the caller), ``str()`` of anything else."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """The lines of a GitHub table: the header, its separator, one line per row. A row with a different
    number of cells than the header is an error (a misaligned column would otherwise render silently)."""
    lines = [row(header), "|" + "---|" * len(header)]
    for cells in rows:
        cells = list(cells)
        if len(cells) != len(header):
            raise ValueError(f"a table row has {len(cells)} cells, the header {len(header)}: {cells!r}")
        lines.append(row(cells))
    return lines
