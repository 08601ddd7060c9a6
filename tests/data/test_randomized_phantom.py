"""The training generator: determinism, drawn modalities and acquisitions, a folded cortex, real-scan contrasts.

Small grids (2-3 mm) keep it fast. The contrast check reads the committed measurement of the real
subject (docs/tissue_ratios_sub-p26.json, made by scripts/tissue_ratios.py), never the real data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_lesionseg.constants import MODALITIES
from napari_lesionseg.data.phantom import make_phantom, write_phantom
from napari_lesionseg.data.phantom.acquisition import brain_mask, pial_mask
from napari_lesionseg.data.phantom.lesions import LesionStyle, place_lesions
from napari_lesionseg.data.phantom.random_contrast import (
    RANDOM_CONTRAST_SHARE,
    ScannerDraw,
    texture_and_resampling,
)
from napari_lesionseg.data.phantom.randomized import (
    MODALITY_CHANCE,
    _thick_slices,
    draw_training_subject,
    make_training_subject,
)
from napari_lesionseg.data.subject import load_subject
from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.evaluation.texture import white_matter_texture
from napari_lesionseg.evaluation.tissue_ratios import estimate_tissues, tissue_ratios

REAL_RATIOS = Path(__file__).resolve().parents[2] / "docs" / "tissue_ratios_sub-p26.json"
REAL_TEXTURE = Path(__file__).resolve().parents[2] / "docs" / "texture_sub-p26.json"
SPACING = 3.0
#: Subjects whose FLAIR / T1w ratios must span the real subject's, and their grid.
RATIO_SEEDS = range(20)
RATIO_SPACING = 2.5


def _ratios(subject) -> dict[str, dict[str, float]]:
    """The same measurement as scripts/tissue_ratios.py: crude T1w k-means, then medians over white matter."""
    tissues = estimate_tissues(subject.images["T1w"], brain_mask(subject), subject.mask > 0)
    return tissue_ratios(subject.images, tissues)


@pytest.fixture(scope="module")
def realistic_ratios() -> list[dict[str, dict[str, float]]]:
    return [
        _ratios(make_training_subject(s, RATIO_SPACING, modalities=("FLAIR", "T1w"), random_contrast=False))
        for s in RATIO_SEEDS
    ]


class TestDeterminism:
    def test_same_seed_same_subject(self):
        first, again = make_training_subject(5, SPACING), make_training_subject(5, SPACING)
        assert first.images.keys() == again.images.keys()
        for modality, image in first.images.items():
            assert np.array_equal(image, again.images[modality])
        assert np.array_equal(first.mask, again.mask)
        assert first.lesion_load == again.lesion_load

    def test_seeds_differ_and_differ_from_the_phantom(self):
        one = make_training_subject(1, SPACING, modalities=("FLAIR",))
        two = make_training_subject(2, SPACING, modalities=("FLAIR",))
        phantom = make_phantom(1, SPACING)
        assert not np.array_equal(one.images["FLAIR"], two.images["FLAIR"])
        assert not np.array_equal(one.tissues["gm"], phantom.tissues["gm"])

    def test_forcing_modalities_changes_nothing_else(self):
        every = make_training_subject(7, SPACING, modalities=MODALITIES)
        some = make_training_subject(7, SPACING, modalities=("T1w", "FLAIR"))
        assert list(some.images) == ["FLAIR", "T1w"]
        for modality in some.images:
            assert np.array_equal(every.images[modality], some.images[modality])
        assert np.array_equal(every.mask, some.mask)

    def test_unknown_modality_is_refused(self):
        with pytest.raises(InvalidInputError, match="DWI"):
            make_training_subject(1, SPACING, modalities=("FLAIR", "DWI"))


class TestDraws:
    def test_modalities_present_and_absent_as_drawn(self):
        draws = [draw_training_subject(s) for s in range(400)]
        for modality, chance in MODALITY_CHANCE.items():
            share = np.mean([modality in d.modalities for d in draws])
            assert abs(share - chance) < 0.07, (modality, share)
        subject = make_training_subject(3, SPACING)
        assert tuple(subject.images) == draw_training_subject(3, SPACING).modalities

    def test_a_quarter_of_the_subjects_get_random_contrasts(self):
        share = np.mean([draw_training_subject(s).scanner.random_contrast for s in range(400)])
        assert RANDOM_CONTRAST_SHARE == 0.25
        assert abs(share - RANDOM_CONTRAST_SHARE) < 0.06

    def test_acquisitions_vary(self):
        draws = [draw_training_subject(s, 1.0) for s in range(200)]
        assert {d.skull for d in draws} == {"skull", "defaced", "stripped"}
        assert {d.slice_axis for d in draws if d.thick} == {"axial", "coronal", "sagittal"}
        assert all(3.0 <= d.slice_mm <= 5.0 for d in draws if d.thick)
        assert 0.3 < np.mean([bool(d.thick) for d in draws]) < 0.6
        assert 0.4 < np.mean([d.scanner.integer for d in draws]) < 0.7

    def test_lesion_loads_from_a_few_small_lesions_to_tens_of_ml(self):
        draws = [draw_training_subject(s) for s in range(400)]
        volumes = np.array([d.target_ml for d in draws])
        assert volumes.min() < 0.05 and volumes.max() > 20.0
        assert 0.22 < np.mean([d.load_category == "very_low" for d in draws]) < 0.38


class TestAcquisition:
    def test_stripped_and_defaced_subjects(self):
        by_skull = {}
        for seed in range(40):
            draw = draw_training_subject(seed, SPACING)
            by_skull.setdefault(draw.skull, seed)
        defaced = make_training_subject(by_skull["defaced"], SPACING, modalities=("FLAIR",))
        head = make_training_subject(by_skull["skull"], SPACING, modalities=("FLAIR",))
        outside = ~brain_mask(defaced)
        assert np.mean(defaced.images["FLAIR"][outside] == 0) > np.mean(head.images["FLAIR"][~brain_mask(head)] == 0)
        assert np.any(defaced.images["FLAIR"][outside] > 0)  # the back of the head keeps its scalp

    def test_strippers_cut_at_the_cortex_or_around_the_csf(self):
        draws = {s: draw_training_subject(s, SPACING) for s in range(200)}
        stripped = {s: d for s, d in draws.items() if d.skull == "stripped"}
        hull = [d.strip_margin_mm for d in stripped.values() if d.stripper == "hull"]
        pial = [d.strip_margin_mm for d in stripped.values() if d.stripper == "pial"]
        assert 0.45 < len(pial) / len(stripped) < 0.75
        assert min(hull) == 0.0 and 0.0 < max(hull) <= 3.0
        assert -1.0 <= min(pial) < -0.5 and 0.5 < max(pial) <= 1.0
        assert any(d.strip_edge_sigma < 0.1 for d in stripped.values())
        assert max(d.strip_edge_sigma for d in stripped.values()) > 0.5

    @pytest.mark.parametrize("stripper", ["hull", "pial"])
    def test_a_stripped_subject_is_zero_beyond_its_strippers_margin(self, stripper):
        seed = next(
            s for s in range(200) if _is_stripped(s, stripper) and draw_training_subject(s, SPACING).strip_margin_mm > 0
        )
        subject = make_training_subject(seed, SPACING, modalities=("FLAIR",))
        draw = draw_training_subject(seed, SPACING)
        boundary = pial_mask(subject) if stripper == "pial" else brain_mask(subject)
        beyond = ndi.distance_transform_edt(~boundary, sampling=SPACING)
        edge = draw.strip_margin_mm + 3 * draw.strip_edge_sigma * SPACING + SPACING
        assert np.all(subject.images["FLAIR"][beyond > edge] == 0)
        assert np.mean(subject.images["FLAIR"][boundary] > 0) > 0.99

    def test_a_pial_stripper_leaves_the_cortex_touching_the_background(self):
        seed = next(s for s in range(200) if _is_stripped(s, "pial"))
        subject = make_training_subject(seed, SPACING, modalities=("FLAIR",))
        kept = subject.images["FLAIR"] > 0
        rim = kept & ~ndi.binary_erosion(kept)
        hull_rim = brain_mask(subject) & ~ndi.binary_erosion(brain_mask(subject))
        grey = subject.tissues["gm"]
        assert grey[rim].mean() > 0.3
        assert grey[rim].mean() > 2 * grey[hull_rim].mean()
        assert pial_mask(subject).sum() < brain_mask(subject).sum()

    @pytest.mark.parametrize("skull", ["skull", "stripped"])
    def test_integer_subjects_hold_whole_numbers(self, skull):
        seed = next(
            s for s in range(200)
            if (d := draw_training_subject(s, SPACING)).scanner.integer and d.skull == skull
            and (skull != "stripped" or d.strip_edge_sigma > 0.3)
        )  # fmt: skip
        subject = make_training_subject(seed, SPACING, modalities=("FLAIR",))
        assert subject.file_dtype == "int16"
        assert np.array_equal(subject.images["FLAIR"], np.round(subject.images["FLAIR"]))

    def test_written_and_read_back_as_a_subject_folder(self, tmp_path):
        subject = make_training_subject(12, SPACING)
        folder = write_phantom(subject, tmp_path, "sub-train012")
        loaded = load_subject(folder)
        assert set(loaded.modalities) == set(subject.images)
        assert np.array_equal(loaded.mask.data, subject.mask)

    def test_thick_slices_blur_along_their_axis_only(self):
        noise = np.random.default_rng(0).standard_normal((40, 41, 42)).astype(np.float32)
        thick = _thick_slices(noise, axis=1, factor=3)
        assert thick.shape == noise.shape
        along = np.abs(np.diff(thick, axis=1)).mean()
        across = np.abs(np.diff(thick, axis=2)).mean()
        assert along < 0.5 * across


@pytest.fixture(scope="module")
def pair():
    """A generated subject and the phantom of the same seed, at 2 mm."""
    return make_training_subject(4, 2.0, modalities=("FLAIR",)), make_phantom(4, 2.0)


class TestAnatomy:
    def test_grey_matter_is_a_thin_ribbon_with_csf_in_the_sulci(self, pair):
        generated, phantom = pair

        def near_csf(subject) -> float:
            gm = subject.tissues["gm"] >= 0.5
            to_csf = ndi.distance_transform_edt(subject.tissues["csf"] < 0.5, sampling=2.0)
            return float(np.mean(to_csf[gm] <= 4.0))

        def near_other(subject) -> float:
            gm = subject.tissues["gm"] >= 0.5
            return float(np.mean(ndi.distance_transform_edt(gm, sampling=2.0)[gm] <= 4.0))

        # Most cortex lies within 4 mm of sulcal or surface CSF; the template's blurred cortex does not.
        assert near_csf(generated) > 0.6 > 0.5 > near_csf(phantom)
        assert near_other(generated) > 0.85

    def test_tissue_fractions_partition_the_brain(self, pair):
        generated, _ = pair
        total = generated.tissues["gm"] + generated.tissues["wm"] + generated.tissues["csf"]
        assert total.max() <= 1.0 + 1e-4
        for name in ("gm", "wm", "csf"):
            assert generated.tissues[name].min() >= -1e-6


class TestLesions:
    def test_infratentorial_lesions_stay_in_their_region(self):
        wm = np.ones((30, 30, 30), dtype=np.float32)
        ventricles = np.full(wm.shape, 40.0, dtype=np.float32)
        region = np.zeros(wm.shape, dtype=bool)
        region[:12] = True
        style = LesionStyle((1.5, 2.5), 0.0, {"infratentorial": 1.0})
        field = place_lesions(wm, ventricles, 1.0, 0.2, "low", np.random.default_rng(1), style, region)
        mask = field.fraction >= 0.5
        assert mask.sum() * 1.0 >= 200  # mm^3, the target
        assert mask[:15].sum() == mask.sum()  # centres in the region, a lesion radius or so at most beyond


class TestContrast:
    def test_realistic_flair_and_t1w_ratios_span_the_real_subject(self, realistic_ratios):
        real = json.loads(REAL_RATIOS.read_text(encoding="utf-8"))["real"]["ratios"]
        for modality in ("FLAIR", "T1w"):
            for tissue in ("lesion", "gm", "csf"):
                values = [r[modality][tissue] for r in realistic_ratios if np.isfinite(r[modality][tissue])]
                assert len(values) >= 0.6 * len(realistic_ratios)
                assert min(values) <= real[modality][tissue] <= max(values), (modality, tissue, real, values)

    def test_flair_lesions_range_from_faint_to_conspicuous(self, realistic_ratios):
        lesion = np.array([r["FLAIR"]["lesion"] for r in realistic_ratios])
        gm = np.array([r["FLAIR"]["gm"] for r in realistic_ratios])
        finite = np.isfinite(lesion)
        assert np.nanmax(lesion) > 1.5 and np.nanmin(lesion) < 1.25
        assert np.any(lesion[finite] - gm[finite] < 0.1)  # lesions barely brighter than the cortex

    def test_random_contrasts_break_the_realistic_order(self):
        subjects = [make_training_subject(s, SPACING, modalities=("FLAIR",), random_contrast=True) for s in range(6)]
        gm_over_wm = []
        for subject in subjects:
            image, tissues = subject.images["FLAIR"], subject.tissues
            gm_over_wm.append(np.median(image[tissues["gm"] > 0.8]) / np.median(image[tissues["wm"] > 0.8]))
        assert min(gm_over_wm) < 0.9 or max(gm_over_wm) > 1.6
        assert {s.contrast for s in subjects} == {"random"}

    def test_committed_measurement_names_no_path(self):
        text = REAL_RATIOS.read_text(encoding="utf-8")
        assert "/shared" not in text and "/work" not in text
        assert json.loads(text)["real"]["subject"] == "sub-p26"


class TestTexture:
    @staticmethod
    def _scanner(integer: bool = False) -> ScannerDraw:
        return ScannerDraw(random_contrast=False, bias_corrected=True, coil=0.0, winsorise=False, integer=integer)

    def test_textures_and_interpolation_vary_between_channels(self):
        flat = np.full((40, 40, 40), 500.0, np.float32)
        noisy = flat + np.random.default_rng(0).normal(0.0, 10.0, flat.shape).astype(np.float32)
        inside = np.ones(flat.shape, bool)
        textures = [
            white_matter_texture(texture_and_resampling(noisy, 1.5, self._scanner(), np.random.default_rng(s)), inside)
            for s in range(12)
        ]
        sds = [t.relative_sd for t in textures]
        correlations = [np.mean(t.neighbour_correlation) for t in textures]
        assert min(sds) < 0.03 and max(sds) > 0.05
        assert min(correlations) < 0.5 and max(correlations) > 0.8

    def test_integer_scanners_keep_whole_numbers(self):
        image = np.full((20, 20, 20), 300.0, np.float32)
        textured = texture_and_resampling(image, 1.5, self._scanner(integer=True), np.random.default_rng(3))
        assert np.array_equal(textured, np.round(textured)) and textured.std() > 0

    @pytest.mark.slow
    def test_realistic_white_matter_texture_spans_the_real_subject(self):
        """Measured as scripts/wm_texture.py does, on the model's 1.5 mm grid, against its committed real values."""
        real = json.loads(REAL_TEXTURE.read_text(encoding="utf-8"))["real"]["textures"]
        measured: dict[str, list] = {"FLAIR": [], "T1w": []}
        for seed in range(8):
            subject = make_training_subject(seed, 1.5, modalities=("FLAIR", "T1w"), random_contrast=False)
            lesion = subject.mask > 0
            wm = estimate_tissues(subject.images["T1w"], brain_mask(subject), lesion)["wm"]
            wm &= ~ndi.binary_dilation(lesion, iterations=2)
            for modality in measured:
                measured[modality].append(white_matter_texture(subject.images[modality], wm))
        for modality, textures in measured.items():
            sds = [t.relative_sd for t in textures]
            correlations = [np.mean(t.neighbour_correlation) for t in textures]
            assert min(sds) <= real[modality]["relative_sd"] <= max(sds), (modality, sds)
            real_correlation = np.mean(real[modality]["neighbour_correlation"])
            assert min(correlations) <= real_correlation <= max(correlations), (modality, correlations)

    def test_committed_texture_names_no_path(self):
        text = REAL_TEXTURE.read_text(encoding="utf-8")
        assert "/shared" not in text and "/work" not in text
        assert json.loads(text)["real"]["subject"] == "sub-p26"


class TestTissueRatios:
    @staticmethod
    def _volume() -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Slabs of CSF, grey and white matter and a lesion block, with known intensities and a little noise."""
        labels = np.zeros((30, 20, 20), dtype=np.int8)  # 0 CSF, 1 GM, 2 WM
        labels[10:20], labels[20:] = 1, 2
        lesion = np.zeros(labels.shape, dtype=bool)
        lesion[24:28, 5:10, 5:10] = True
        rng = np.random.default_rng(0)
        t1w = np.choose(labels, [30.0, 60.0, 100.0]) + rng.normal(0, 1.0, labels.shape)
        flair = np.choose(labels, [20.0, 120.0, 100.0]) + rng.normal(0, 1.0, labels.shape)
        t1w[lesion], flair[lesion] = 70.0, 150.0
        return {"T1w": t1w, "FLAIR": flair}, labels, lesion

    def test_known_ratios(self):
        images, labels, lesion = self._volume()
        tissues = estimate_tissues(images["T1w"], np.ones(labels.shape, dtype=bool), lesion)
        assert np.array_equal(tissues["csf"], labels == 0)
        assert np.array_equal(tissues["gm"], labels == 1)
        assert np.array_equal(tissues["wm"], (labels == 2) & ~lesion)
        ratios = tissue_ratios(images, tissues)
        assert ratios["FLAIR"]["lesion"] == pytest.approx(1.5, abs=0.01)
        assert ratios["FLAIR"]["gm"] == pytest.approx(1.2, abs=0.01)
        assert ratios["FLAIR"]["csf"] == pytest.approx(0.2, abs=0.01)
        assert ratios["T1w"]["gm"] == pytest.approx(0.6, abs=0.01)

    def test_missing_tissue_gives_nan(self):
        images, labels, _ = self._volume()
        tissues = estimate_tissues(images["T1w"], np.ones(labels.shape, dtype=bool), None)
        assert np.isnan(tissue_ratios(images, tissues)["FLAIR"]["lesion"])


def _is_stripped(seed: int, stripper: str) -> bool:
    draw = draw_training_subject(seed, SPACING)
    return draw.skull == "stripped" and draw.stripper == stripper
