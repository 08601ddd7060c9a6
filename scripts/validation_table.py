#!/usr/bin/env python
"""Print the validation table (mean over the held-out subjects) of every checkpoint in a folder, from
the checkpoints' own metadata: `python scripts/validation_table.py WEIGHTS_DIR`."""

import sys
from pathlib import Path

from napari_lesionseg.engine.checkpoints import read_metadata

keys = ("dsc", "sensitivity", "ppv", "specificity", "f2", "apr", "ltpr", "lfpr")
print("| checkpoint | loss | " + " | ".join(k.upper() if len(k) < 5 else k for k in keys) + " | steps | time |")
print("|---" * (len(keys) + 4) + "|")
for path in sorted(Path(sys.argv[1]).glob("*.pt")):
    meta = read_metadata(path)
    mean = meta.validation.get("mean", {})
    cells = [f"{mean[k]:.{4 if k == 'specificity' else 3}f}" if mean.get(k) is not None else "n/a" for k in keys]
    loss = f"F-beta, beta={meta.beta:g}" if meta.beta is not None else meta.loss
    minutes = meta.training.get("elapsed_s", 0) / 60
    print(f"| {meta.name} | {loss} | " + " | ".join(cells) + f" | {meta.training.get('steps')} | {minutes:.0f} min |")
