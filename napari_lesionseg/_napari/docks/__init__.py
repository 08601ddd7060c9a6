"""napari docks (the only Qt code of the package): thin widgets that call the engine."""

from napari_lesionseg._napari.docks.finetune import FineTuneWidget
from napari_lesionseg._napari.docks.fusion import FusionExplorerWidget
from napari_lesionseg._napari.docks.inference import InferenceWidget
from napari_lesionseg._napari.docks.review import LesionReviewWidget
from napari_lesionseg._napari.docks.subject import SubjectWidget

__all__ = ["FineTuneWidget", "FusionExplorerWidget", "InferenceWidget", "LesionReviewWidget", "SubjectWidget"]
