"""Metrics as the docks show them: one label and one number format per metric (from `vocabulary`).

Headless: the Lesion review, Fusion explorer and Fine-tune docks put these rows in their tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from napari_lesionseg.vocabulary import METRIC_FORMATS, METRIC_LABELS

__all__ = ["comparison_rows", "format_metric", "metric_pairs", "mode_table", "verdict"]

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


#: Changes smaller than this are noise, not a verdict (on a metric in [0, 1]).
VERDICT_TOLERANCE = 0.01
#: Metrics the verdict weighs, and whether a higher value is better.
_VERDICT_METRICS = {"dsc": True, "ltpr": True, "lfpr": False, "ppv": True, "sensitivity": True}


def verdict(before: Mapping[str, Any], after: Mapping[str, Any] | None, *, held_out: bool = False) -> str:
    """One sentence on a before/after pair: better, worse or mixed, naming what moved, and where it was measured."""
    if not after:
        return ""
    better, worse = [], []
    for key, higher_is_better in _VERDICT_METRICS.items():
        old, new = before.get(key), after.get(key)
        if old is None or new is None or abs(new - old) < VERDICT_TOLERANCE:
            continue
        change = f"{METRIC_LABELS[key]} {new - old:+.3f}"
        (better if (new > old) == higher_is_better else worse).append(change)
    if better and worse:
        summary = f"Mixed: {', '.join(better)}, but {', '.join(worse)}."
    elif better:
        summary = f"Better: {', '.join(better)}."
    elif worse:
        summary = f"Worse: {', '.join(worse)}."
    else:
        summary = "No change beyond noise."
    where = "on held-out data" if held_out else "on the mask it was trained on (not held out): check another subject"
    return f"{summary} Measured {where}."
