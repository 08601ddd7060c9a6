"""Header warnings reach the napari user as warning notifications naming the file; the layers still open."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from napari_lesionseg._napari.reader import read_paths


def test_a_file_without_qform_and_sform_opens_with_a_warning_notification(tmp_path):
    from napari.utils.notifications import notification_manager

    image = nib.Nifti1Image(np.ones((6, 5, 4), np.float32), None)
    image.header.set_zooms((2.0, 2.0, 2.0))
    path = tmp_path / "bare_FLAIR.nii.gz"
    nib.save(image, str(path))
    before = len(notification_manager.records)
    layers = read_paths(str(path))
    [notification] = notification_manager.records[before:]
    assert notification.severity == "warning"
    assert str(path) in str(notification.message) and "neither a qform nor an sform" in str(notification.message)
    assert len(layers) == 1 and layers[0][0].shape == (4, 5, 6)
    assert layers[0][1]["scale"] == (2.0, 2.0, 2.0)
