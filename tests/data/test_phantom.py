"""The MNI152 phantom: determinism, MR contrasts, lesion model, files on disk (4 mm grids, fast)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_lesionseg.constants import CORE_MODALITIES, MASK_SUFFIX
from napari_lesionseg.data.phantom import (
    LESION_LOADS,
    Phantom,
    anatomy,
    make_phantom,
    subject_name,
    write_phantom,
    write_phantoms,
)
from napari_lesionseg.data.phantom._fields import Grid, smooth_field
from napari_lesionseg.data.phantom.contrast import CONTRAST_PROFILES
from napari_lesionseg.errors import InvalidInputError, LesionSegError

SPACING = 4.0


@pytest.fixture(scope="module")
def high_load() -> Phantom:
    return make_phantom(seed=11, spacing=SPACING, lesion_load="high", t1c=True)


@pytest.fixture(scope="module")
def loads() -> list[Phantom]:
    """Four consecutive seeds: lesion_load=None cycles very low, low, medium, high."""
    return [make_phantom(seed=s, spacing=SPACING) for s in range(4, 8)]


@pytest.fixture(scope="module")
def scanners() -> dict[str, Phantom]:
    """The same subject on every scanner."""
    return {name: make_phantom(seed=11, spacing=SPACING, lesion_load="high", contrast=name) for name in CONTRAST_PROFILES}


def _means(phantom: Phantom, modality: str) -> dict[str, float]:
    """Mean intensity of nearly pure tissues and of the lesion mask."""
    image, tissues, lesion = phantom.images[modality], phantom.tissues, phantom.mask.astype(bool)
    regions = {
        "wm": (tissues["wm"] >= 0.9) & ~lesion,
        "gm": tissues["gm"] >= 0.7,
        "csf": tissues["csf"] >= 0.9,
        "lesion": lesion & (tissues["lesion"] >= 0.9),
    }
    assert all(region.sum() >= 10 for region in regions.values())
    return {name: float(image[region].mean()) for name, region in regions.items()}


class TestDeterminism:
    def test_same_seed_gives_identical_arrays(self, high_load):
        again = make_phantom(seed=11, spacing=SPACING, lesion_load="high", t1c=True)
        assert again.images.keys() == high_load.images.keys()
        for modality, image in high_load.images.items():
            assert np.array_equal(again.images[modality], image)
        assert np.array_equal(again.mask, high_load.mask)
        assert np.array_equal(again.affine, high_load.affine)

    def test_different_seeds_differ(self, loads):
        first, second = loads[0], loads[1]
        assert first.images["FLAIR"].shape == second.images["FLAIR"].shape
        assert not np.array_equal(first.images["FLAIR"], second.images["FLAIR"])
        assert not np.array_equal(first.mask, second.mask)

    def test_t1c_leaves_the_other_modalities_unchanged(self, high_load):
        without = make_phantom(seed=11, spacing=SPACING, lesion_load="high")
        assert set(without.images) == set(CORE_MODALITIES)
        for modality in CORE_MODALITIES:
            assert np.array_equal(without.images[modality], high_load.images[modality])


class TestArrays:
    def test_types_shapes_and_affine(self, high_load):
        shape = high_load.mask.shape
        assert high_load.mask.dtype == np.uint8
        assert set(np.unique(high_load.mask)) == {0, 1}
        for image in high_load.images.values():
            assert image.dtype == np.float32 and image.shape == shape
            assert image.min() >= 0
        assert np.allclose(np.abs(high_load.affine[:3, :3]).sum(axis=0), SPACING)
        assert nib.aff2axcodes(high_load.affine) == ("S", "P", "L")

    def test_int16_subjects_hold_whole_numbers(self, loads):
        integer = [p for p in loads if p.file_dtype == "int16"]
        assert integer, "expected at least one int16 subject among four"
        image = integer[0].images["T1w"]
        assert np.array_equal(image, np.round(image))

    def test_intensity_scales_differ_between_subjects_and_modalities(self, loads):
        flair_max = [float(p.images["FLAIR"].max()) for p in loads]
        assert max(flair_max) / min(flair_max) > 1.5
        phantom = loads[0]
        per_modality = [float(np.percentile(phantom.images[m], 99)) for m in CORE_MODALITIES]
        assert max(per_modality) / min(per_modality) > 1.5

    def test_head_has_a_scalp_outside_the_brain(self, high_load):
        flair = high_load.images["FLAIR"]
        brain = (high_load.tissues["wm"] + high_load.tissues["gm"]) > 0.5
        head = flair > 0.3 * np.percentile(flair[brain], 50)
        assert (head & ~brain).sum() > 0.2 * brain.sum()

    @pytest.mark.parametrize("spacing", [3.0, 5.5])
    def test_other_spacings(self, spacing):
        phantom = make_phantom(seed=3, spacing=spacing, lesion_load=0.0)
        assert np.allclose(np.abs(phantom.affine[:3, :3]).sum(axis=0), spacing)
        assert phantom.images["FLAIR"].shape == phantom.mask.shape
        # the same head, so the field of view in mm is nearly the same
        extent = np.array(phantom.mask.shape) * spacing
        reference = np.array(make_phantom(seed=3, spacing=SPACING, lesion_load=0.0).mask.shape) * SPACING
        assert np.all(np.abs(extent - reference) <= max(spacing, SPACING))


class TestContrast:
    def test_flair(self, high_load):
        means = _means(high_load, "FLAIR")
        assert means["lesion"] > 1.3 * means["wm"]
        assert means["csf"] < 0.5 * means["wm"]
        assert means["gm"] > means["wm"]

    def test_t1w(self, high_load):
        means = _means(high_load, "T1w")
        assert means["lesion"] < means["wm"]
        assert means["csf"] < 0.5 * means["wm"]
        assert means["gm"] < means["wm"]

    def test_t2w(self, high_load):
        means = _means(high_load, "T2w")
        assert means["lesion"] > 1.3 * means["wm"]
        assert means["csf"] > 2.0 * means["wm"]
        assert means["gm"] > means["wm"]

    def test_pdw(self, high_load):
        means = _means(high_load, "PDw")
        assert means["lesion"] > means["wm"]
        assert means["csf"] > means["wm"]
        assert means["gm"] > means["wm"]

    def test_t1c_enhancement_makes_some_lesion_voxels_brighter_than_on_t1w(self, high_load):
        lesion = high_load.mask.astype(bool)
        ratio = high_load.images["T1c"][lesion] / np.median(high_load.images["T1c"][high_load.tissues["wm"] > 0.9])
        assert ratio.max() > 1.2

    def test_rician_background(self, high_load):
        """Air is not zero but Rayleigh noise: positive, with mean/std near sqrt(pi/(4-pi)) = 1.91."""
        corner = high_load.images["FLAIR"][-4:, :4, :4].ravel()
        assert corner.min() >= 0 and corner.mean() > 0
        assert 1.4 < corner.mean() / corner.std() < 2.6


class TestContrastProfiles:
    """Other scanners render the same head and lesions: lower FLAIR lesion contrast, flatter T1w, more noise."""

    def test_same_anatomy_and_lesions_on_every_scanner(self, scanners):
        default = scanners["default"]
        for name, phantom in scanners.items():
            assert phantom.contrast == name
            assert np.array_equal(phantom.mask, default.mask) and np.array_equal(phantom.affine, default.affine)
            assert all(np.array_equal(phantom.tissues[t], default.tissues[t]) for t in default.tissues)
        assert not np.array_equal(scanners["low"].images["FLAIR"], default.images["FLAIR"])

    def test_low_is_a_second_scanner(self, scanners):
        def contrast(phantom, modality, high, low):
            means = _means(phantom, modality)
            return (means[high] - means[low]) / means[low]

        default, low = scanners["default"], scanners["low"]
        assert contrast(low, "FLAIR", "lesion", "gm") < 0.5 * contrast(default, "FLAIR", "lesion", "gm")
        assert contrast(low, "T1w", "wm", "gm") < 0.6 * contrast(default, "T1w", "wm", "gm")
        assert low.lesion_load == default.lesion_load
        profile, base = CONTRAST_PROFILES["low"], CONTRAST_PROFILES["default"]
        assert profile.noise[0] >= base.noise[1]  # at least as noisy as the noisiest default subject

    def test_unknown_profile_is_refused_and_the_cli_offers_every_profile(self):
        from napari_lesionseg.cli.sample import CONTRASTS

        with pytest.raises(InvalidInputError, match="unknown contrast profile 'bright'"):
            make_phantom(seed=1, spacing=SPACING, contrast="bright")
        assert CONTRASTS == tuple(CONTRAST_PROFILES)

    @pytest.mark.slow
    def test_the_default_scanner_still_makes_the_bundled_sample(self):
        from napari_lesionseg.data.samples import sample_subjects
        from napari_lesionseg.data.volumes import load_volume

        folder = sample_subjects()[0]
        stored = load_volume(folder / f"{folder.name}_FLAIR.nii.gz").data
        phantom = make_phantom(seed=9001, spacing=2.0)
        assert stored.shape == phantom.images["FLAIR"].shape
        assert np.array_equal(stored, np.round(phantom.images["FLAIR"]))


class TestLesions:
    def test_lesions_lie_in_white_matter(self, high_load):
        lesion = high_load.mask.astype(bool)
        assert np.mean(high_load.tissues["wm"][lesion] >= 0.5) > 0.99

    def test_lesions_are_periventricular_and_elsewhere(self, high_load):
        """Many lesion voxels are near the ventricles, yet not all of them."""
        csf = high_load.tissues["csf"] >= 0.8
        near_csf = ndi.binary_dilation(csf, iterations=2)
        lesion = high_load.mask.astype(bool)
        share = np.mean(near_csf[lesion])
        assert 0.1 < share < 0.95

    def test_loads_cycle_with_the_seed_and_span_very_low_to_high(self, loads):
        categories = [p.lesion_load.category for p in loads]
        assert categories == list(LESION_LOADS)
        volumes = [p.lesion_load.volume_ml for p in loads]
        assert volumes == sorted(volumes) and volumes[-1] > 10 * volumes[0]
        very_low = loads[0].lesion_load
        assert 0 < very_low.volume_ml < 1.0 and 1 <= very_low.n_lesions <= 12

    def test_volume_reaches_its_target(self, loads):
        for phantom in loads:
            load = phantom.lesion_load
            voxel_ml = SPACING**3 / 1000
            assert load.target_ml <= load.volume_ml <= 1.3 * load.target_ml + 20 * voxel_ml
            assert load.n_voxels == int(phantom.mask.sum())

    def test_volume_in_ml_picks_the_category(self):
        phantom = make_phantom(seed=2, spacing=SPACING, lesion_load=5.0)
        assert phantom.lesion_load.category == "medium"
        assert phantom.lesion_load.target_ml == 5.0

    def test_zero_load_gives_an_empty_mask(self):
        phantom = make_phantom(seed=2, spacing=SPACING, lesion_load=0.0)
        assert phantom.mask.sum() == 0 and phantom.lesion_load.n_lesions == 0
        assert phantom.images["FLAIR"].max() > 0


class TestInvalidInput:
    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"seed": -1}, "seed"),
            ({"seed": 1.5}, "seed"),
            ({"seed": 1, "spacing": 0.1}, "spacing"),
            ({"seed": 1, "spacing": float("nan")}, "spacing"),
            ({"seed": 1, "lesion_load": "huge"}, "very_low"),
            ({"seed": 1, "lesion_load": -2.0}, "mL"),
        ],
    )
    def test_rejected(self, kwargs, message):
        with pytest.raises(InvalidInputError, match=message):
            make_phantom(**{"spacing": SPACING, **kwargs})

    def test_missing_nilearn_says_what_to_install(self, monkeypatch):
        monkeypatch.setattr(anatomy.importlib.util, "find_spec", lambda name: None)
        with pytest.raises(LesionSegError, match=r"pip install napari-lesionseg\[phantom\]"):
            anatomy._nilearn_data_dir()


class TestFiles:
    def test_written_files_names_geometry_and_values(self, high_load, tmp_path):
        folder = write_phantom(high_load, tmp_path, "sub-x")
        names = sorted(p.name for p in folder.iterdir())
        expected = [f"sub-x_{m}.nii.gz" for m in high_load.images] + [f"sub-x_{MASK_SUFFIX}.nii.gz"]
        assert names == sorted(expected)
        flair = nib.load(folder / "sub-x_FLAIR.nii.gz")
        assert nib.aff2axcodes(flair.affine) == ("R", "A", "S")
        assert np.allclose(flair.header.get_zooms(), SPACING)
        assert int(flair.header["sform_code"]) == 1 and int(flair.header["qform_code"]) == 1
        assert flair.get_data_dtype() == np.dtype(high_load.file_dtype)
        self._assert_same_world_values(high_load.images["FLAIR"], high_load.affine, flair)
        mask = nib.load(folder / f"sub-x_{MASK_SUFFIX}.nii.gz")
        assert mask.get_data_dtype() == np.uint8
        assert set(np.unique(np.asanyarray(mask.dataobj))) == {0, 1}
        assert np.array_equal(mask.affine, flair.affine)
        self._assert_same_world_values(high_load.mask, high_load.affine, mask)

    @staticmethod
    def _assert_same_world_values(array, affine, image):
        """A voxel of the phantom array and the file voxel at the same world point hold the same value."""
        data = np.asanyarray(image.dataobj)
        rng = np.random.default_rng(0)
        indices = np.column_stack([rng.integers(0, n, 200) for n in array.shape])
        world = nib.affines.apply_affine(affine, indices)
        file_indices = np.round(nib.affines.apply_affine(np.linalg.inv(image.affine), world)).astype(int)
        assert np.array_equal(data[tuple(file_indices.T)], array[tuple(indices.T)])

    def test_files_are_byte_identical_for_the_same_phantom(self, high_load, tmp_path):
        first = write_phantom(high_load, tmp_path / "a", "sub-x")
        second = write_phantom(high_load, tmp_path / "b", "sub-x")
        for path in first.iterdir():
            assert path.read_bytes() == (second / path.name).read_bytes()

    @pytest.mark.parametrize("dtype", ["int16", "float32"])
    def test_dtype_override(self, high_load, tmp_path, dtype):
        folder = write_phantom(high_load, tmp_path, "sub-x", dtype=dtype)
        image = nib.load(folder / "sub-x_T2w.nii.gz")
        assert image.get_data_dtype() == np.dtype(dtype)
        assert np.allclose(np.asanyarray(image.dataobj).max(), high_load.images["T2w"].max(), atol=0.5)

    def test_unknown_dtype_is_rejected(self, high_load, tmp_path):
        with pytest.raises(InvalidInputError, match="int16"):
            write_phantom(high_load, tmp_path, "sub-x", dtype="uint8")
        assert not (tmp_path / "sub-x").exists()

    def test_write_phantoms_names_and_seeds(self, tmp_path):
        seen = []
        folders = write_phantoms(tmp_path, 2, seed=40, spacing=6.0, on_subject=lambda f, p: seen.append(p.seed))
        assert [f.name for f in folders] == [subject_name(1), subject_name(2)] == ["sub-phantom001", "sub-phantom002"]
        assert seen == [40, 41]
        assert all(len(list(f.glob("*.nii.gz"))) == len(CORE_MODALITIES) + 1 for f in folders)

    def test_write_phantoms_needs_at_least_one_subject(self, tmp_path):
        with pytest.raises(InvalidInputError, match=">= 1"):
            write_phantoms(tmp_path, 0)


class TestAnatomy:
    def test_template_has_lateral_ventricles_on_both_sides(self):
        template = anatomy.load_template()
        ventricles = template.ventricle_distance == 0  # on the 2 mm template-space grid
        volume_ml = ventricles.sum() * 2.0**3 / 1000
        assert 5 < volume_ml < 40
        x_mm = template.coarse_origin[0] + 2.0 * np.nonzero(ventricles)[0]
        assert 0.35 < np.mean(x_mm > 0) < 0.65
        assert np.all(np.abs(x_mm) < 50)

    def test_tissue_fractions_partition_the_head(self):
        template = anatomy.load_template()
        grid, _ = anatomy.canonical_grid(template, SPACING)
        head = anatomy.make_anatomy(template, grid, np.random.default_rng(0), SPACING)
        total = sum(head.fractions.values())
        assert total.shape == grid.shape
        assert total.max() <= 1 + 1e-5 and total.min() >= 0
        assert np.allclose(total[head.fractions["wm"] > 0.5], 1.0, atol=1e-5)
        assert total[0, 0, 0] < 1e-6  # air in the corner of the field of view
        for name in ("bone", "marrow", "fat", "meninges", "sinus"):
            assert head.fractions[name].max() > 0.5, name


class TestSmoothField:
    def test_same_field_at_any_spacing(self):
        """Coefficients sit on a world lattice, so grids that share points share values."""
        fine = Grid((np.arange(-40, 41, 2.0), np.arange(-30, 31, 2.0), np.arange(0, 21, 2.0)), (2, 1, 0))
        coarse = Grid((np.arange(-40, 41, 4.0), np.arange(-30, 31, 4.0), np.arange(0, 21, 4.0)), (2, 1, 0))
        a = smooth_field(fine, np.random.default_rng(5), knot_spacing_mm=20.0)
        b = smooth_field(coarse, np.random.default_rng(5), knot_spacing_mm=20.0)
        assert np.allclose(a[::2, ::2, ::2], b, atol=1e-5)

    def test_one_voxel_grid_and_scale(self):
        single = Grid((np.zeros(1), np.zeros(1), np.zeros(1)), (2, 1, 0))
        assert smooth_field(single, np.random.default_rng(0), 30.0).shape == (1, 1, 1)
        big = Grid((np.arange(-100, 100, 5.0),) * 3, (2, 1, 0))
        values = smooth_field(big, np.random.default_rng(1), knot_spacing_mm=10.0, std=2.0)
        assert 1.0 < values.std() < 3.0


@pytest.mark.slow
def test_template_maps_match_nilearn_loaders():
    """The fast loader reads the same maps that nilearn's public API returns."""
    datasets = pytest.importorskip("nilearn.datasets")
    folder = anatomy._nilearn_data_dir()
    for name, loader in (("gm", datasets.load_mni152_gm_template), ("wm", datasets.load_mni152_wm_template)):
        ours = anatomy._load_unit_max(folder / anatomy._TEMPLATE_FILES[name])
        theirs = loader(resolution=1)
        assert np.allclose(ours, theirs.get_fdata(), atol=1e-6)
    brain = anatomy._load_unit_max(folder / anatomy._TEMPLATE_FILES["t1"]) > 0.2
    assert np.array_equal(brain, datasets.load_mni152_brain_mask(resolution=1).get_fdata() > 0)
    assert np.array_equal(nib.load(folder / anatomy._TEMPLATE_FILES["gm"]).affine, theirs.affine)
