"""napari sample-data contribution: one shipped phantom subject (all modalities + reference mask)."""

from __future__ import annotations

from napari_lesionseg._napari.reader import subject_layer_data
from napari_lesionseg.data.samples import sample_subject as sample_subject_folder
from napari_lesionseg.data.subject import load_subject

__all__ = ["sample_subject"]


def sample_subject() -> list[tuple]:
    """Layer data of the first sample subject: FLAIR, T1w, T2w, PDw images and the reference mask."""
    return subject_layer_data(load_subject(sample_subject_folder(0)))
