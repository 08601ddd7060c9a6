#!/usr/bin/env python
"""Probe (issue 18): does a checkpoint's output hang on its batch-norm statistics?

Re-estimates every BatchNorm3d's running mean and variance from random 32^3 patches of training
subjects (no labels, no gradients: forward passes in train mode, cumulative average), saves the
recalibrated checkpoint, and prints the DSC of both on held-out subjects through the one prediction
entry point (no test-time augmentation). A probe, not a training step: nothing is bundled.

    python scripts/bn_recalibration_probe.py CKPT OUT.pt --data TRAIN_DIR --eval HELD_OUT_DIR [--eval DIR ...]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from napari_lesionseg.data.subject import load_subject
from napari_lesionseg.engine.checkpoints import load_checkpoint, save_checkpoint
from napari_lesionseg.engine.predict import predict
from napari_lesionseg.engine.settings import InferenceSettings
from napari_lesionseg.training.data import find_subject_dirs, load_training_subjects


def recalibrate(model: torch.nn.Module, subjects, modalities, patches: int, seed: int = 0) -> None:
    """Running BN statistics from `patches` random patches (two per forward pass)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over every pass
    model.eval()
    for norm in norms:
        norm.train()
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for _ in range(patches // 2):
            batch = []
            for _ in range(2):
                subject = subjects[rng.integers(len(subjects))]
                start = [int(rng.integers(0, max(1, n - 32 + 1))) for n in subject.mask.shape]
                window = tuple(slice(s, s + 32) for s in start)
                batch.append(subject.image[(slice(None), *window)])
            model(torch.from_numpy(np.stack(batch)))
    model.eval()


def dsc(checkpoint, folder) -> tuple[float, float]:
    subject = load_subject(folder)
    settings = InferenceSettings(tta="none", device="cpu", uncertainty=False, stream_partial=False)
    result = predict(subject, checkpoint, settings)
    gt = subject.mask.data != 0
    volume = float(result.mask.sum() * np.prod(subject.geometry.spacing) / 1000)
    return float(2 * (result.mask & gt).sum() / max(1, result.mask.sum() + gt.sum())), volume


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("out")
    parser.add_argument("--data", required=True)
    parser.add_argument("--eval", action="append", default=[])
    parser.add_argument("--patches", type=int, default=400)
    parser.add_argument("--subjects", type=int, default=40, help="training subjects to draw patches from")
    args = parser.parse_args()
    model, metadata = load_checkpoint(args.checkpoint)
    folders = find_subject_dirs(args.data)[: args.subjects]
    subjects = load_training_subjects(folders, metadata.modalities, metadata.optional_modalities)
    recalibrate(model, subjects, metadata.modalities, args.patches)
    metadata.name = f"{metadata.name}_bn-recalibrated"
    save_checkpoint(args.out, model, metadata)
    for folder in (d for p in args.eval for d in find_subject_dirs(p)):
        before, after = dsc(args.checkpoint, folder), dsc(args.out, folder)
        print(f"{folder.name}: DSC {before[0]:.3f} ({before[1]:.1f} mL) -> {after[0]:.3f} ({after[1]:.1f} mL)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
