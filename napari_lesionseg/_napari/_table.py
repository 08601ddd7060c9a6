"""Read-only result tables for the docks: text shown as formatted, rows selectable, columns fitting the dock.

magicgui's table reformats every number-like cell (``0.064`` becomes ``6.400e-02``); the docks
format their numbers themselves, so the tables here use Qt's plain item delegate.
"""

from __future__ import annotations

from collections.abc import Sequence

from magicgui.widgets import Table
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QStyledItemDelegate

__all__ = ["make_table", "split"]

_ROW_HEIGHT = 22


def make_table(columns: Sequence[str], *, visible_rows: int) -> Table:
    """An empty read-only table with `columns`, tall enough to show `visible_rows` rows."""
    table = Table(value=split([], columns))
    table.read_only = True
    native = table.native
    native.setItemDelegate(QStyledItemDelegate(native))
    native.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    native.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    native.verticalHeader().setDefaultSectionSize(_ROW_HEIGHT)
    native.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)  # no sideways scrolling
    native.setMinimumHeight(_ROW_HEIGHT * (visible_rows + 1) + 6)
    return table


def split(rows: Sequence[Sequence[str]], columns: Sequence[str]) -> dict[str, list]:
    """magicgui's "split" table format (a plain dict of lists would be read as columns), rows numbered from 1."""
    return {"data": [list(row) for row in rows], "index": list(range(1, len(rows) + 1)), "columns": list(columns)}
