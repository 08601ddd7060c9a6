"""The names the CLI, the docks and the engine share: losses, fusion modes, augmentations, devices, metric labels.

One module, so a choice offered in ``lesionseg --help`` is the same as the one a dock lists and
the one the engine accepts. Constants the papers define live in `constants`.
"""

from __future__ import annotations

__all__ = [
    "BENCH_WORKLOADS",
    "BORDER_MODES",
    "CONFUSION_MODES",
    "DEVICES",
    "FUSION_MODES",
    "LOSSES",
    "LOSS_LABELS",
    "METRIC_FORMATS",
    "METRIC_LABELS",
    "PRECISIONS",
    "TTA_CHOICES",
]

#: Patch fusion (001 Sec. III.C): Voronoi tiling, uniform averaging, B-spline weighted soft voting;
#: MONAI's Gaussian for comparison. The paper's choice is "spline".
FUSION_MODES: tuple[str, ...] = ("tiling", "uniform", "spline", "gaussian")
#: Test-time augmentation sets: none, the paper's four (identity + 180-degree rotation per plane), all 8 mirrorings.
TTA_CHOICES: tuple[str, ...] = ("none", "paper", "mirror8")
#: Patch grid borders: the last patch flush with the volume, or the paper's half-patch padding.
BORDER_MODES: tuple[str, ...] = ("flush", "pad")
#: Where the network runs; "auto" takes CUDA, then MPS, then the CPU.
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
#: `lesionseg bench` workloads: the 2 mm sample subject, a 1 mm subject, the paper's MSSEG workload.
BENCH_WORKLOADS: tuple[str, ...] = ("sample", "1mm", "paper")
#: Network arithmetic: "auto" takes bfloat16 on a CPU with native bfloat16, float16 on CUDA, else float32.
PRECISIONS: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")
#: Training losses (001 eq. 4, 000 eq. 3, 003 eq. 5) and their display names, in the order the docks list them.
LOSS_LABELS: dict[str, str] = {
    "fbeta": "F-beta", "tversky": "Tversky", "dice": "Dice", "gdl": "GDL", "focal": "Focal", "boundary": "Boundary + GDL",
}  # fmt: skip
LOSSES: tuple[str, ...] = tuple(LOSS_LABELS)
#: How the confusion overlay colours voxels: each voxel by itself, or each whole lesion by its status.
CONFUSION_MODES: tuple[str, ...] = ("voxel", "lesion")
#: Display names of the metrics (`evaluation.metrics.compute_metrics` keys) in every table and plot.
METRIC_LABELS: dict[str, str] = {
    "dsc": "DSC", "sensitivity": "Sensitivity", "specificity": "Specificity", "ppv": "PPV", "f2": "F2",
    "apr": "APR", "ltpr": "LTPR", "lfpr": "LFPR", "vd": "VD", "vd_abs": "|VD|", "jaccard": "Jaccard",
    "assd_mm": "ASSD (mm)", "hd95_mm": "HD95 (mm)", "n_lesions_pred": "Lesions", "volume_pred_ml": "Volume (mL)",
}  # fmt: skip
#: How each metric is printed (distances and volumes with fewer digits).
METRIC_FORMATS: dict[str, str] = {key: "{:.3f}" for key in METRIC_LABELS} | {
    "assd_mm": "{:.2f}", "hd95_mm": "{:.1f}", "n_lesions_pred": "{:d}", "volume_pred_ml": "{:.2f}",
}  # fmt: skip
