"""Realistic multimodal MS phantoms built on the MNI152 template (needs the optional nilearn).

No public MS data set can be bundled, so the project makes its own subjects: the MNI ICBM152 2009
head, deformed per subject, with MS-like white-matter lesions and FLAIR, T1w, T2w, PDw (and T1c)
contrasts, bias fields, Rician noise and scanner-specific intensity scales. The phantom is the sample
and demo data; `make_training_subject` (randomized.py) is the training generator, whose subjects vary
as real scans do (folded cortex, random contrasts, 2-D slices, skull or not).

Example:
    >>> from napari_lesionseg.data.phantom import make_phantom, write_phantom
    >>> phantom = make_phantom(seed=9001, spacing=2.0)
    >>> folder = write_phantom(phantom, "subjects", "sub-01")
"""

from napari_lesionseg.data.phantom.acquisition import SLICE_AXES, acquire, skull_strip, thick_slices
from napari_lesionseg.data.phantom.lesions import LESION_LOADS
from napari_lesionseg.data.phantom.randomized import draw_training_subject, make_training_subject
from napari_lesionseg.data.phantom.subject import LesionLoad, Phantom, make_phantom
from napari_lesionseg.data.phantom.writer import subject_name, write_phantom, write_phantoms

__all__ = [
    "LESION_LOADS",
    "SLICE_AXES",
    "LesionLoad",
    "Phantom",
    "acquire",
    "draw_training_subject",
    "make_phantom",
    "make_training_subject",
    "skull_strip",
    "subject_name",
    "thick_slices",
    "write_phantom",
    "write_phantoms",
]
