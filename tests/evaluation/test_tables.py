"""Metric rows the docks show: one label and one format per metric, undefined values said so."""

from napari_lesionseg.evaluation.tables import comparison_rows, format_metric, metric_pairs, mode_table
from napari_lesionseg.vocabulary import METRIC_LABELS


def test_each_metric_has_its_label_and_format():
    assert format_metric("dsc", 0.71234) == "0.712"
    assert format_metric("hd95_mm", 12.345) == "12.3"
    assert format_metric("n_lesions_pred", 7) == "7"
    assert format_metric("ltpr", None) == "n/a"


def test_pairs_fill_an_odd_count_with_an_empty_cell():
    rows = metric_pairs({"dsc": 0.5, "ppv": 0.25, "ltpr": None}, ["dsc", "ppv", "ltpr"])
    assert rows == [["DSC", "0.500", "PPV", "0.250"], ["LTPR", "n/a", "", ""]]


def test_comparison_gives_the_signed_change_only_when_both_sides_are_defined():
    rows = comparison_rows({"dsc": 0.5, "lfpr": None}, {"dsc": 0.625, "lfpr": 0.1}, ["dsc", "lfpr"])
    assert rows == [["DSC", "0.500", "0.625", "+0.125"], ["LFPR", "n/a", "0.100", ""]]
    assert comparison_rows({"dsc": 0.5}, None, ["dsc"]) == [["DSC", "0.500", "n/a", ""]]


def test_the_fusion_table_has_a_column_per_mode_and_the_shared_labels():
    table = mode_table({"tiling": {"sensitivity": 0.5}, "spline": {"sensitivity": 0.75}}, ["sensitivity"])
    assert table == {"data": [["0.500", "0.750"]], "index": [METRIC_LABELS["sensitivity"]], "columns": ["tiling", "spline"]}
