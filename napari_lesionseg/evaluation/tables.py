"""Metrics as the docks show them: one label and one number format per metric (from `vocabulary`).

Headless: the Lesion review, Fusion explorer and Fine-tune docks put these rows in their tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from napari_lesionseg.vocabulary import METRIC_FORMATS, METRIC_LABELS

__all__ = ["comparison_rows", "format_metric", "metric_pairs", "mode_table"]

#: Shown where a metric is undefined (its reason is in the metrics' ``notes``).
MISSING = "n/a"


def format_metric(key: str, value: Any) -> str:
    """`value` of metric `key` printed with its format, or ``"n/a"`` when undefined."""
    if value is None:
        return MISSING
    if isinstance(value, float) and METRIC_FORMATS.get(key, "{:.3f}") == "{:d}":
        value = int(value)
    return METRIC_FORMATS.get(key, "{:.3f}").format(value) if isinstance(value, (int, float)) else str(value)


def metric_pairs(metrics: Mapping[str, Any], keys: Sequence[str]) -> list[list[str]]:
    """The metrics two to a row (label, value, label, value), so a table stays short."""
    cells = [(METRIC_LABELS[key], format_metric(key, metrics.get(key))) for key in keys]
    cells += [("", "")] * (len(cells) % 2)
    return [[*cells[i], *cells[i + 1]] for i in range(0, len(cells), 2)]


def comparison_rows(before: Mapping[str, Any], after: Mapping[str, Any] | None, keys: Sequence[str]) -> list[list[str]]:
    """``[label, before, after, change]`` per metric (change empty when either side is undefined)."""
    after = after or {}
    rows = []
    for key in keys:
        old, new = before.get(key), after.get(key)
        change = "" if old is None or new is None else f"{new - old:+.3f}"
        rows.append([METRIC_LABELS[key], format_metric(key, old), format_metric(key, new), change])
    return rows


def mode_table(metrics: Mapping[str, Mapping[str, Any]], keys: Sequence[str]) -> dict[str, list]:
    """magicgui's "split" table: one row per metric, one column per fusion mode."""
    rows = [[format_metric(key, values.get(key)) for values in metrics.values()] for key in keys]
    return {"data": rows, "index": [METRIC_LABELS[key] for key in keys], "columns": list(metrics)}
