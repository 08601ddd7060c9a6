"""Per-epoch training history as `history.csv` and `history.json` in the run's work folder."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from napari_lesionseg._files import write_text_atomic

__all__ = ["HISTORY_CSV", "HISTORY_JSON", "write_history"]

HISTORY_CSV = "history.csv"
HISTORY_JSON = "history.json"


def write_history(run_dir: str | os.PathLike[str], rows: Sequence[dict[str, Any]]) -> tuple[Path, Path]:
    """Rewrite both history files atomically from `rows` (one dict per epoch); NaN is written as empty/null."""
    run_dir = Path(run_dir)
    clean = [{key: _finite(value) for key, value in row.items()} for row in rows]
    columns = list(dict.fromkeys(key for row in clean for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in clean)
    csv_path = write_text_atomic(run_dir / HISTORY_CSV, buffer.getvalue())
    json_path = write_text_atomic(run_dir / HISTORY_JSON, json.dumps(clean, indent=1) + "\n")
    return csv_path, json_path


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value
