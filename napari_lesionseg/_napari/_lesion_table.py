"""The Lesion review dock's lesion table: one row per lesion, its status coloured as in the overlay,
and whether the corrected mask keeps it."""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtGui import QColor

from napari_lesionseg._napari._table import make_table, split
from napari_lesionseg.constants import CONFUSION_COLORS, FN, FP, TP
from napari_lesionseg.evaluation.review import Review, lesion_coverage

__all__ = ["LESION_COLUMNS", "LesionTable", "coverage_word"]

LESION_COLUMNS = ("source", "status", "mL", "mean prob", "corrected")
_STATUS_VALUES = {"TP": TP, "FN": FN, "FP": FP}


class LesionTable:
    """A magicgui table of the review's lesions (`widget`), keeping the selection across updates."""

    def __init__(self, visible_rows: int = 6) -> None:
        self.widget = make_table(LESION_COLUMNS, visible_rows=visible_rows)

    @property
    def selected(self) -> int | None:
        """Index of the selected lesion row, if any."""
        rows = {index.row() for index in self.widget.native.selectionModel().selectedRows()}
        return min(rows) if rows else None

    def show(self, review: Review) -> None:
        """List `review`'s lesions, statuses coloured; the selected row stays selected if it still exists."""
        selected = self.selected
        self.widget.value = split([_row(lesion) for lesion in review.lesions], LESION_COLUMNS)
        column = LESION_COLUMNS.index("status")
        for row in range(self.widget.native.rowCount()):
            item = self.widget.native.item(row, column)
            red, green, blue, _ = CONFUSION_COLORS[_STATUS_VALUES[item.text()]]
            item.setBackground(QColor.fromRgbF(red, green, blue, 0.35))
        if selected is not None and selected < len(review.lesions):
            self.select(selected)

    def select(self, index: int) -> None:
        """Select row `index` without re-entering the dock's click handler."""
        table = self.widget.native
        table.blockSignals(True)
        table.selectRow(index)
        table.blockSignals(False)

    def show_coverage(self, review: Review | None, corrected: np.ndarray | None) -> None:
        """Fill the 'corrected' column: whether the corrected mask keeps, removed or partly keeps each lesion."""
        if review is None or not review.lesions:
            return
        words = [""] * len(review.lesions)
        if corrected is not None and np.shape(corrected) == review.voxel_map.shape:
            words = [coverage_word(f) for f in lesion_coverage(review, np.asarray(corrected))]
        column = LESION_COLUMNS.index("corrected")
        for row, word in enumerate(words):
            self.widget.native.item(row, column).setText(word)


def coverage_word(fraction: float) -> str:
    """``"kept"``, ``"removed"`` or ``"40% kept"``."""
    return "kept" if fraction >= 1.0 else "removed" if fraction <= 0.0 else f"{fraction:.0%} kept"


def _row(lesion: Any) -> list[str]:
    mean = "" if lesion.mean_prob is None else f"{lesion.mean_prob:.2f}"
    return [lesion.source, lesion.status, f"{lesion.volume_ml:.3f}", mean, ""]
