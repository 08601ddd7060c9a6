"""napari docks (the only Qt code of the package): thin widgets that call the engine."""

from napari_lesionseg._widgets.subject import SubjectWidget

__all__ = ["SubjectWidget"]
