"""A small line plot drawn with QPainter: napari bundles no plotting library, and this needs none.

Used for the precision-recall curve of the Lesion review dock and the live loss curve of the
Fine-tune dock. Colours follow the widget's palette, so it matches napari's light and dark themes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPalette, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

__all__ = ["CurvePlot"]

_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 44, 12, 22, 34
_LINE = QColor(62, 160, 228)
_MARKER = QColor(255, 190, 40)


class CurvePlot(QWidget):
    """One curve plus an optional marked point, with labelled axes.

    Args:
        title: shown above the plot.
        x_label, y_label: axis names.
        x_range, y_range: fixed axis limits; None fits the data.
    """

    def __init__(
        self,
        title: str,
        x_label: str,
        y_label: str,
        *,
        x_range: tuple[float, float] | None = None,
        y_range: tuple[float, float] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.title, self.x_label, self.y_label = title, x_label, y_label
        self._fixed_x, self._fixed_y = x_range, y_range
        self.x = np.empty(0)
        self.y = np.empty(0)
        self.marker: tuple[float, float] | None = None
        self.message = "no data"
        self.setMinimumHeight(170)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def set_curve(self, x: Sequence[float], y: Sequence[float], marker: tuple[float, float] | None = None) -> None:
        """Show the curve through the points (x, y), and `marker` as a dot."""
        self.x, self.y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        self.marker = marker
        self.update()

    def clear(self, message: str = "no data") -> None:
        """Remove the curve and show `message` instead."""
        self.set_curve([], [])
        self.message = message
        self.update()

    # --- drawing ------------------------------------------------------------------------------

    def paintEvent(self, event: object) -> None:  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        text = self.palette().color(QPalette.ColorRole.WindowText)
        area = QRectF(
            _MARGIN_LEFT, _MARGIN_TOP, self.width() - _MARGIN_LEFT - _MARGIN_RIGHT, self.height() - _MARGIN_TOP - _MARGIN_BOTTOM
        )
        painter.setPen(QPen(text))
        painter.drawText(QRectF(0, 2, self.width(), _MARGIN_TOP - 4), Qt.AlignmentFlag.AlignCenter, self.title)
        painter.drawRect(area)
        (x0, x1), (y0, y1) = self._limits()
        self._draw_axes(painter, area, (x0, x1), (y0, y1))
        if self.x.size:
            self._draw_curve(painter, area, (x0, x1), (y0, y1))
        else:
            painter.drawText(area, Qt.AlignmentFlag.AlignCenter, self.message)
        painter.end()

    def _draw_curve(self, painter: QPainter, area: QRectF, xs: tuple[float, float], ys: tuple[float, float]) -> None:
        to_screen = _mapper(area, xs, ys)
        painter.setPen(QPen(_LINE, 2))
        painter.drawPolyline(QPolygonF([to_screen(x, y) for x, y in zip(self.x, self.y) if np.isfinite(y)]))
        if self.marker is not None:
            painter.setPen(QPen(_MARKER, 2))
            painter.setBrush(_MARKER)
            painter.drawEllipse(to_screen(*self.marker), 4, 4)

    def _draw_axes(self, painter: QPainter, area: QRectF, xs: tuple[float, float], ys: tuple[float, float]) -> None:
        right, top = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, Qt.AlignmentFlag.AlignHCenter
        for value, y in ((ys[1], area.top()), (ys[0], area.bottom())):
            painter.drawText(QRectF(0, y - 8, _MARGIN_LEFT - 4, 16), right, _tick(value))
        for value, x in ((xs[0], area.left()), (xs[1], area.right())):
            painter.drawText(QRectF(x - 30, area.bottom() + 2, 60, 14), top, _tick(value))
        painter.drawText(QRectF(area.left(), area.bottom() + 16, area.width(), 16), top, self.x_label)
        painter.save()
        painter.translate(10, area.center().y())
        painter.rotate(-90)
        painter.drawText(QRectF(-area.height() / 2, -8, area.height(), 16), top, self.y_label)
        painter.restore()

    def _limits(self) -> tuple[tuple[float, float], tuple[float, float]]:
        return _range(self.x, self._fixed_x, pad=0.0), _range(self.y, self._fixed_y, pad=0.05)


def _range(values: np.ndarray, fixed: tuple[float, float] | None, *, pad: float) -> tuple[float, float]:
    """`fixed`, else the data's range widened by `pad` of its span (an empty or flat range is widened to show)."""
    if fixed is not None:
        return fixed
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (0.0, 1.0)
    low, high = float(finite.min()), float(finite.max())
    if high == low:
        return (low - max(abs(low), 1.0) * 0.5, high + max(abs(high), 1.0) * 0.5)
    margin = pad * (high - low)
    return (low - margin, high + margin)


def _mapper(area: QRectF, xs: tuple[float, float], ys: tuple[float, float]) -> Callable[[float, float], QPointF]:
    def to_screen(x: float, y: float) -> QPointF:
        fx = (x - xs[0]) / (xs[1] - xs[0])
        fy = (y - ys[0]) / (ys[1] - ys[0])
        return QPointF(area.left() + fx * area.width(), area.bottom() - fy * area.height())

    return to_screen


def _tick(value: float) -> str:
    return f"{value:.3g}"
