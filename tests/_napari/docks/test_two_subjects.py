"""Two subjects open in one viewer: the inputs come from one of them, never from both."""

from __future__ import annotations

import pytest

from napari_lesionseg._napari.docks import InferenceWidget
from napari_lesionseg.errors import InvalidInputError

from .test_inference import MODALITIES, SHAPE, add_subject

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _input_subjects(dock) -> dict[str, str | None]:
    from napari_lesionseg._napari._subjects import layer_subject

    return {combo.label: getattr(layer_subject(combo.value), "name", None) for combo in dock._model._inputs}


def test_opening_a_second_subject_makes_all_of_its_layers_the_inputs(home, make_napari_viewer, make_subject):
    viewer = make_napari_viewer()
    dock = InferenceWidget(viewer)
    add_subject(viewer, make_subject(name="sub-01", shape=SHAPE))
    assert set(_input_subjects(dock).values()) == {"sub-01"}
    add_subject(viewer, make_subject(name="sub-02", shape=SHAPE, seed=1))
    assert _input_subjects(dock) == dict.fromkeys(MODALITIES, "sub-02")
    assert dock._model.input_layers(dock._model.selected().metadata)


def test_inputs_picked_from_two_subjects_are_refused(home, make_napari_viewer, make_subject):
    viewer = make_napari_viewer()
    dock = InferenceWidget(viewer)
    add_subject(viewer, make_subject(name="sub-01", shape=SHAPE))
    add_subject(viewer, make_subject(name="sub-02", shape=SHAPE, seed=1))
    first_t1w = next(layer for layer in viewer.layers if layer.name == "T1w")  # sub-01's, opened first
    next(combo for combo in dock._model._inputs if combo.label == "T1w").value = first_t1w
    with pytest.raises(InvalidInputError, match=r"come from 2 subjects \(FLAIR, T2w, PDw from sub-02 .*T1w from sub-01"):
        dock._model.input_layers(dock._model.selected().metadata)


def test_what_each_checkpoint_needs_is_said_again_once_a_subject_is_open(home, make_napari_viewer, make_subject):
    from qtpy.QtWidgets import QRadioButton

    viewer = make_napari_viewer()
    dock = InferenceWidget(viewer)

    def texts():
        return [button.text() for button in dock._model._checkpoint.native.findChildren(QRadioButton)]

    assert all(text.endswith("(needs FLAIR, T1w, T2w, PDw)") for text in texts())  # nothing open yet
    add_subject(viewer, make_subject(shape=SHAPE))
    assert texts() and not any("needs" in text for text in texts())
