"""Constants the papers define, in one place.

References are to Hashemi et al. 2018, "Asymmetric Similarity Loss Function to Balance Precision
and Recall in Highly Unbalanced Deep Medical Image Segmentation" (arXiv 1803.11078), unless noted.
"""

from __future__ import annotations

# --- Modalities ---------------------------------------------------------------------------------
#: Channel order used by the project (Sec. III.D: MSSEG uses these five, ISBI the first four).
MODALITIES: tuple[str, ...] = ("FLAIR", "T1w", "T2w", "PDw", "T1c")
#: Modalities a subject folder must not lack for the default four-channel models.
CORE_MODALITIES: tuple[str, ...] = ("FLAIR", "T1w", "T2w", "PDw")
#: BIDS-like suffix of the reference lesion mask in a subject folder.
MASK_SUFFIX = "label-lesion_mask"

# --- Network (Sec. III.A.2) ---------------------------------------------------------------------
GROWTH_RATE = 12
DROPOUT = 0.2
LAYERS_PER_BLOCK = 4
DENSE_BLOCKS_DOWN = 5
COMPRESSION = 0.5  # "dimension reduction of 0.5 at transition layers"
INITIAL_CONVS = 3
PATCH_SIZE = (64, 64, 64)  # MSSEG patches (Sec. III.E.2)

# --- Training (Sec. III.E.2) ---------------------------------------------------------------------
MIN_LESION_VOXELS = 10  # only patches with >= 10 lesion voxels feed the similarity losses
LEARNING_RATE = 5e-4
LR_DECAY = 0.95
LR_DECAY_EVERY = 500  # steps
LR_INTERVAL_GROWTH = 2
LR_INTERVAL_GROWTH_EVERY = 16_000  # steps

# --- Losses --------------------------------------------------------------------------------------
PAPER_BETAS = (1.0, 1.5, 3.0)  # Table I
BEST_BETA = 1.5  # Table I: the best balance of DSC and F2 (the default checkpoint)
FOCAL_ALPHA = 0.25  # Lin et al. defaults, as used for the focal-loss comparison (Table II)
FOCAL_GAMMA = 2.0
BOUNDARY_ALPHA_START = 1.0  # Kervadec et al. 2019, Sec. 3: GDL weight 1 -> 0.01 by 0.01 per epoch
BOUNDARY_ALPHA_END = 0.01
BOUNDARY_ALPHA_STEP = 0.01

# --- Inference and fusion (Sec. III.C, III.F) ----------------------------------------------------
THRESHOLD = 0.5  # "probabilities of 0.5 or more were considered lesion"
OVERLAP = 0.5  # 50 % overlap: the paper's speed/accuracy trade-off
#: Smallest lesion kept in a predicted mask, in mm^3: the MSSEG 2016 challenge's evaluation ignored
#: connected components under 3 mm^3 (Commowick et al., Sci. Rep. 2018); 0 keeps every component.
MIN_LESION_MM3 = 3.0

# --- Display (Fig. 8) ----------------------------------------------------------------------------
#: Confusion-map label values.
TP, FN, FP = 1, 2, 3
#: RGBA colours of the confusion map: TP green, FN blue, FP red (Fig. 8).
CONFUSION_COLORS: dict[int, tuple[float, float, float, float]] = {
    TP: (0.0, 1.0, 0.0, 1.0),
    FN: (0.0, 0.0, 1.0, 1.0),
    FP: (1.0, 0.0, 0.0, 1.0),
}
