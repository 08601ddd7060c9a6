"""How one inference run cuts, predicts and fuses: the settings every caller passes to the engine."""

from __future__ import annotations

from dataclasses import dataclass

from napari_lesionseg.constants import OVERLAP, THRESHOLD
from napari_lesionseg.engine.fusion import check_modes
from napari_lesionseg.engine.patches import check_overlap, tta_variants
from napari_lesionseg.engine.precision import check_precision
from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.vocabulary import BORDER_MODES

__all__ = ["InferenceSettings"]


@dataclass(frozen=True)
class InferenceSettings:
    """How to cut, predict and fuse.

    Attributes:
        patch_size: patch shape; None takes the checkpoint's (`engine.predict.iter_predict`) or 64^3.
        overlap: overlap fraction in ``[0, 1)`` (0.5 in the paper).
        fusion: fusion modes to compute; the first is the primary one.
        tta: ``"none"``, ``"paper"`` (identity + 180-degree rotation in each plane) or ``"mirror8"``.
        border: ``"flush"`` (last patch flush with the border) or ``"pad"`` (the paper's grid).
        batch_size: patches per network call (each call holds ``batch_size * len(tta)`` inputs).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
        threshold: probability at or above which a voxel is lesion.
        priority_slice: patches covering this slice along `priority_axis` are predicted first.
        priority_axis: the axis of `priority_slice` (0: napari's slider axis).
        precision: network arithmetic, one of `vocabulary.PRECISIONS` (`engine.precision`):
            ``"auto"`` is bfloat16 on a CPU with native bfloat16, float16 on CUDA, else float32.
        skip_background: `engine.predict` sends no patch outside the head foreground to the network
            (probability 0 there).
        brain_only: report lesions only inside the brain estimated from the FLAIR (`engine.intracranial`):
            no glands, fat or scalp outside the skull; False reports them anywhere in the head.
        fused_network: run the network's inference form (`models.fused`: batch norm folded, ReLU
            fused; equal in eval mode); False runs it as trained (the benchmark's reference).
        uncertainty: also accumulate the spread of the predictions.
        stream_partial: attach the fused probability of each batch's region to its event.
    """

    patch_size: tuple[int, int, int] | None = None
    overlap: float = OVERLAP
    fusion: tuple[str, ...] = ("spline",)
    tta: str = "paper"
    border: str = "flush"
    batch_size: int = 2
    device: str = "auto"
    threshold: float = THRESHOLD
    priority_slice: int | None = None
    priority_axis: int = 0
    precision: str = "auto"
    skip_background: bool = True
    brain_only: bool = True
    fused_network: bool = True
    uncertainty: bool = True
    stream_partial: bool = True

    def __post_init__(self) -> None:
        fusion = (self.fusion,) if isinstance(self.fusion, str) else tuple(self.fusion)
        object.__setattr__(self, "fusion", check_modes(dict.fromkeys(fusion)))
        check_overlap(self.overlap)
        tta_variants(self.tta)
        check_precision(self.precision)
        if self.border not in BORDER_MODES:
            raise InvalidInputError(f"border must be one of {BORDER_MODES}, got {self.border!r}")
        if int(self.batch_size) < 1:
            raise InvalidInputError(f"batch size must be at least 1, got {self.batch_size}")
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise InvalidInputError(f"threshold must be a probability in [0, 1], got {self.threshold}")
        if self.priority_axis not in (0, 1, 2):
            raise InvalidInputError(f"priority axis must be 0, 1 or 2, got {self.priority_axis}")
