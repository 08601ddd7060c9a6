"""napari-lesionseg: MS lesion segmentation and review in napari."""

__version__ = "0.1.0"
