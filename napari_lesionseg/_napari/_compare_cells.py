"""The Fusion explorer's side-by-side views: per fusion mode the run's image, probability and mask, and a
disagreement view, each titled, for napari's grid mode."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Layer

from napari_lesionseg._napari._layers import placement, show_layer, single_color_labels
from napari_lesionseg._napari._run_layers import MASK_COLOR, PROBABILITY_COLORMAP

if TYPE_CHECKING:
    import napari

__all__ = ["CompareCells"]

DISAGREEMENT_COLORMAP = "inferno"
DISAGREEMENT_MASK_COLOR = "orange"
#: Opacity of the input image under the disagreement map (context without hiding small differences).
_DIM_BACKDROP = 0.4


class CompareCells:
    """Builds the layers of each grid view for one run (placed by `where`, over a copy of `backdrop`)."""

    def __init__(self, viewer: napari.viewer.Viewer, where: dict[str, Any], backdrop: Layer | None, run: str) -> None:
        self._viewer, self._where, self._backdrop, self._run = viewer, where, backdrop, run

    def _place(self) -> dict[str, Any]:
        """A fresh copy of the placement (each layer gets its own metadata dict)."""
        return {**self._where, "metadata": dict(self._where["metadata"])}

    def _backdrop_copy(self, cell: str, opacity: float = 1.0) -> list[Layer]:
        """The run's input image (its data shared, not copied) for one view of the grid."""
        source = self._backdrop
        if source is None:
            return []
        layer = show_layer(
            self._viewer,
            f"{source.name} ({cell}) [{self._run}]",
            source.data,
            "image",
            **placement(source, "backdrop"),
            colormap=source.colormap,
            contrast_limits=source.contrast_limits,
            opacity=opacity,
        )
        return [layer]

    def mode(self, mode: str, probability: np.ndarray, threshold: float) -> list[Layer]:
        """The run's input image, one fusion mode's probability and its mask (outlined), titled."""
        prob = show_layer(
            self._viewer,
            f"{mode} probability [{self._run}]",
            probability,
            "image",
            **self._place(),
            colormap=PROBABILITY_COLORMAP,
            blending="additive",
            contrast_limits=(0.0, 1.0),
        )
        mask = show_layer(
            self._viewer,
            f"{mode} mask [{self._run}]",
            (probability >= threshold).astype(np.uint8),
            "labels",
            **self._place(),
            **single_color_labels(MASK_COLOR),
            contour=1,  # outlines, so the probability under them stays visible
        )
        return [*self._backdrop_copy(mode), prob, mask, self._title(mode)]

    def disagreement(self, spread: np.ndarray, differ: np.ndarray) -> list[Layer]:
        """The spread of the modes' probabilities over a dimmed image, and where their masks differ."""
        high = float(spread.max())
        image = show_layer(
            self._viewer,
            f"fusion disagreement [{self._run}]",
            spread,
            "image",
            **self._place(),
            colormap=DISAGREEMENT_COLORMAP,
            blending="additive",
            contrast_limits=(0.0, high if high > 0 else 1.0),
        )
        masks = show_layer(
            self._viewer,
            f"masks disagree [{self._run}]",
            differ.astype(np.uint8),
            "labels",
            **self._place(),
            **single_color_labels(DISAGREEMENT_MASK_COLOR),
            opacity=0.7,
        )
        return [*self._backdrop_copy("disagreement", _DIM_BACKDROP), image, masks, self._title("disagreement")]

    def _title(self, text: str) -> Layer:
        """A text label at the top-left corner of a grid view, so each panel says what it shows."""
        where = self._place()
        corner = np.zeros((1, 3))
        corner[0, 0] = self._viewer.dims.current_step[0]
        return show_layer(
            self._viewer, f"title: {text} [{self._run}]", corner, "points", **where, size=0.1,
            features={"title": [text]}, text={"string": "{title}", "color": "white", "size": 14, "anchor": "upper_left"},
            face_color="transparent",
        )  # fmt: skip
