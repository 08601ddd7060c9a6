"""The Lesion review dock's lesion table: one row per lesion (`evaluation.review_rows`), sortable, its status
coloured as in the overlay, and whether the corrected mask keeps it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import QTableWidgetItem

from napari_lesionseg._napari._table import make_table, split
from napari_lesionseg.constants import CONFUSION_COLORS, FN, FP, TP
from napari_lesionseg.evaluation.review import Review
from napari_lesionseg.evaluation.review_rows import ReviewRow, row_coverage

__all__ = ["LESION_COLUMNS", "LesionTable", "coverage_word"]

LESION_COLUMNS = ("status", "ref mL", "pred mL", "mean prob", "corrected")
_STATUS_VALUES = {"TP": TP, "FN": FN, "FP": FP}
#: Where each item keeps its row's index in the review (the table may be sorted) and its sort key; magicgui's
#: Table keeps the cell's value under UserRole itself.
_ROW_ROLE, _KEY_ROLE = Qt.ItemDataRole.UserRole + 100, Qt.ItemDataRole.UserRole + 101


class _SortableItem(QTableWidgetItem):
    """A cell that sorts by its key (numbers as numbers, blanks last), not by its text."""

    def __lt__(self, other: QTableWidgetItem) -> bool:
        mine, theirs = self.data(_KEY_ROLE), other.data(_KEY_ROLE)
        return (mine is None, mine if mine is not None else 0) < (theirs is None, theirs if theirs is not None else 0)


class LesionTable:
    """A table of the review's rows (`widget`): click a header to sort; the selection survives updates."""

    def __init__(self, visible_rows: int = 8) -> None:
        self.widget = make_table(LESION_COLUMNS, visible_rows=visible_rows)
        self._count = 0

    @property
    def selected(self) -> int | None:
        """Review index of the selected row, if any (whatever the sort order)."""
        table = self.widget.native
        rows = sorted({index.row() for index in table.selectionModel().selectedRows()})
        return None if not rows else table.item(rows[0], 0).data(_ROW_ROLE)

    def texts(self) -> list[list[str]]:
        """The cells as shown, one list per row in review order (whatever the sort order)."""
        table = self.widget.native
        by_index = {
            table.item(r, 0).data(_ROW_ROLE): [table.item(r, c).text() for c in range(table.columnCount())]
            for r in range(table.rowCount())
        }
        return [by_index[i] for i in sorted(by_index)]

    def show(self, rows: Sequence[ReviewRow]) -> None:
        """List `rows`, statuses coloured; the selected lesion stays selected if it still exists."""
        selected, table = self.selected, self.widget.native
        table.setSortingEnabled(False)
        self.widget.value = split([["", "", "", "", ""] for _ in rows], LESION_COLUMNS)
        for index, row in enumerate(rows):
            cells = (
                (row.status, _STATUS_VALUES[row.status]),
                _number(row.reference_ml, "{:.3f}"),
                _number(row.predicted_ml, "{:.3f}"),
                _number(row.mean_prob, "{:.2f}"),
                ("", None),
            )
            for column, (text, key) in enumerate(cells):
                item = _SortableItem(text)
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                item.setData(_ROW_ROLE, index)
                item.setData(_KEY_ROLE, key)
                table.setItem(index, column, item)
            red, green, blue, _ = CONFUSION_COLORS[_STATUS_VALUES[row.status]]
            table.item(index, 0).setBackground(QColor.fromRgbF(red, green, blue, 0.35))
        table.setSortingEnabled(True)
        self._count = len(rows)
        if selected is not None and selected < len(rows):
            self.select(selected)

    def select(self, index: int) -> None:
        """Select the row of review index `index` without re-entering the dock's click handler."""
        table = self.widget.native
        visual = next((r for r in range(table.rowCount()) if table.item(r, 0).data(_ROW_ROLE) == index), None)
        if visual is None:
            return
        table.blockSignals(True)
        table.selectRow(visual)
        table.blockSignals(False)

    def show_coverage(self, review: Review | None, rows: Sequence[ReviewRow], corrected: np.ndarray | None) -> None:
        """Fill the 'corrected' column: whether the corrected mask keeps, removed or partly keeps each row."""
        if review is None or not rows or self._count != len(rows):
            return
        fractions = [None] * len(rows)
        if corrected is not None and np.shape(corrected) == review.voxel_map.shape:
            fractions = list(row_coverage(review, list(rows), np.asarray(corrected)))
        table, column = self.widget.native, LESION_COLUMNS.index("corrected")
        table.setSortingEnabled(False)
        for visual in range(table.rowCount()):
            fraction = fractions[table.item(visual, 0).data(_ROW_ROLE)]
            item = table.item(visual, column)
            item.setText("" if fraction is None else coverage_word(fraction))
            item.setData(_KEY_ROLE, fraction)
        table.setSortingEnabled(True)


def coverage_word(fraction: float) -> str:
    """``"kept"``, ``"removed"`` or ``"40% kept"``."""
    return "kept" if fraction >= 1.0 else "removed" if fraction <= 0.0 else f"{fraction:.0%} kept"


def _number(value: float | None, fmt: str) -> tuple[str, float | None]:
    return ("", None) if value is None else (fmt.format(value), float(value))
