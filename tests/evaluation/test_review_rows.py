"""One row per lesion: found lesions once with both volumes, missed ones, false positives, bulk selection."""

import numpy as np
import pytest

from napari_lesionseg.evaluation.review import review_masks
from napari_lesionseg.evaluation.review_rows import false_positives_under, review_rows, row_coverage, row_voxels


@pytest.fixture
def review():
    reference = np.zeros((10, 20, 20), bool)
    prediction = np.zeros_like(reference)
    reference[2:5, 2:6, 2:6] = True  # A: found, the prediction covers half of it plus a rim
    prediction[2:5, 2:4, 2:7] = True
    reference[2:5, 12:16, 12:16] = True  # B: missed
    prediction[7:9, 15:17, 2:4] = True  # C: an 8-voxel false positive
    prediction[8, 10, 10] = True  # D: a 1-voxel false positive
    return review_masks(prediction, reference, spacing=(1.0, 1.0, 1.0))


def test_each_lesion_is_listed_once_with_both_volumes(review):
    rows = review_rows(review)
    assert [row.status for row in rows] == ["TP", "FN", "FP", "FP"]
    assert len(rows) == review.metrics["n_lesions_gt"] + review.metrics["n_lesions_fp"]
    found = rows[0]
    assert found.reference_ml == pytest.approx(48 / 1000) and found.predicted_ml == pytest.approx(30 / 1000)
    assert rows[1].predicted_ml is None and rows[2].reference_ml is None


def test_rows_edit_the_predicted_components_or_the_missed_lesion(review):
    rows = review_rows(review)
    assert len(row_voxels(review, rows[0])[0]) == 30  # the predicted lesion, rim included
    assert len(row_voxels(review, rows[1])[0]) == 48  # the missed reference lesion
    corrected = np.zeros(review.voxel_map.shape, bool)
    corrected[row_voxels(review, rows[0])] = True
    corrected[row_voxels(review, rows[2])] = True
    np.testing.assert_allclose(row_coverage(review, rows, corrected), [0.5, 0.0, 1.0, 0.0])  # A half covered


def test_bulk_selection_takes_only_small_false_positives(review):
    rows = review_rows(review)
    assert false_positives_under(rows, 0.005) == [3]  # the 1-voxel speck, not the 8-voxel one
    assert false_positives_under(rows, 0.1) == [2, 3]
