"""napari docks (the only Qt code of the package): thin widgets that call the engine."""

from napari_lesionseg._widgets.finetune import FineTuneWidget
from napari_lesionseg._widgets.fusion import FusionExplorerWidget
from napari_lesionseg._widgets.inference import InferenceWidget
from napari_lesionseg._widgets.review import LesionReviewWidget
from napari_lesionseg._widgets.subject import SubjectWidget

__all__ = ["FineTuneWidget", "FusionExplorerWidget", "InferenceWidget", "LesionReviewWidget", "SubjectWidget"]
