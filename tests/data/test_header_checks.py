"""Header checks before any voxel is read: declared size against the file and the memory budget,
zero or negative voxel sizes, qform/sform disagreement; warnings name the file and reach the CLI."""

from __future__ import annotations

import gzip
import struct
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from _faults import assert_untouched, snapshot
from conftest import make_affine, write_nifti

from napari_lesionseg.cli import main
from napari_lesionseg.data.volumes import load_volume
from napari_lesionseg.errors import GeometryWarning, InvalidInputError

SHAPE = (12, 10, 8)
_PIXDIM_OFFSET = 76  # NIfTI-1: float32 pixdim[8]


def _patch_pixdim(path: Path, sizes: tuple[float, float, float]) -> None:
    """Write voxel sizes into the stored header as they are (nibabel 'fixes' them on save)."""
    data = bytearray(gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes())
    data[_PIXDIM_OFFSET + 4 : _PIXDIM_OFFSET + 16] = struct.pack("<3f", *sizes)
    path.write_bytes(gzip.compress(bytes(data)) if path.suffix == ".gz" else bytes(data))


def _write(path: Path, *, qform: bool = True, sform: bool = True, affine=None) -> Path:
    affine = make_affine((2.0, 2.0, 2.0)) if affine is None else affine
    image = nib.Nifti1Image(np.ones(SHAPE, np.float32), affine)
    image.header.set_qform(affine, code=1 if qform else 0)
    image.header.set_sform(affine, code=1 if sform else 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))
    return path


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_a_header_declaring_more_voxels_than_the_file_holds_is_refused(tmp_path, suffix):
    header = nib.Nifti1Header()
    header.set_data_shape((4000, 4000, 4000))
    header.set_data_dtype(np.int16)
    raw = header.binaryblock + b"\0" * 36  # 384 bytes: a header and no data
    path = tmp_path / f"huge_FLAIR{suffix}"
    path.write_bytes(gzip.compress(raw) if suffix == ".nii.gz" else raw)
    before = snapshot(path)
    with pytest.raises(InvalidInputError, match=r"declares 4000x4000x4000 voxels of int16 \(119.2 GiB\)") as caught:
        load_volume(path)
    assert str(path) in str(caught.value)
    assert_untouched(before, tmp_path)


def test_a_volume_beyond_the_memory_budget_is_refused_before_reading(tmp_path, monkeypatch):
    path = write_nifti(tmp_path / "big_FLAIR.nii.gz", np.zeros((64, 64, 64), np.float32))
    monkeypatch.setenv("LESIONSEG_MEMORY_LIMIT", "1M")
    with pytest.raises(InvalidInputError, match=r"needs about 3.0 MiB of memory, more than the 1.0 MiB available") as caught:
        load_volume(path)
    assert str(caught.value).startswith(str(path))


def test_a_zero_voxel_size_without_sform_is_refused(tmp_path):
    path = _write(tmp_path / "zero_FLAIR.nii.gz", qform=True, sform=False)
    _patch_pixdim(path, (0.0, 2.0, 2.0))
    before = snapshot(path)
    with pytest.raises(InvalidInputError, match="voxel size .* is 0 x 2 x 2 mm and it has no sform") as caught:
        load_volume(path)
    assert str(path) in str(caught.value)
    assert_untouched(before, tmp_path)


def test_a_zero_voxel_size_with_an_sform_warns_and_uses_the_sform(tmp_path):
    path = _write(tmp_path / "zero_FLAIR.nii.gz")
    _patch_pixdim(path, (0.0, 0.0, 0.0))
    with pytest.warns(GeometryWarning, match="the sform gives 2 x 2 x 2 mm") as caught:
        volume = load_volume(path)
    assert str(path) in str(caught[0].message)
    assert volume.geometry.spacing == pytest.approx((2.0, 2.0, 2.0))


def test_a_negative_voxel_size_warns(tmp_path):
    path = _write(tmp_path / "neg_FLAIR.nii", sform=False)
    _patch_pixdim(path, (-2.0, 2.0, 2.0))
    with pytest.warns(GeometryWarning, match="zero or negative"):
        assert load_volume(path).geometry.spacing == pytest.approx((2.0, 2.0, 2.0))


def test_no_qform_and_no_sform_warns(tmp_path):
    header = nib.Nifti1Header()
    image = nib.Nifti1Image(np.ones(SHAPE, np.float32), None, header)
    image.header.set_zooms((2.0, 2.0, 2.0))
    path = tmp_path / "bare_FLAIR.nii.gz"
    nib.save(image, str(path))
    assert int(nib.load(path).header["sform_code"]) == int(nib.load(path).header["qform_code"]) == 0
    with pytest.warns(GeometryWarning, match="neither a qform nor an sform"):
        assert load_volume(path).geometry.spacing == pytest.approx((2.0, 2.0, 2.0))


def test_qform_and_sform_that_disagree_warn_naming_the_file(tmp_path):
    path = _write(tmp_path / "shifted_FLAIR.nii.gz")
    image = nib.load(path)
    moved = image.affine.copy()
    moved[:3, 3] += (0.0, 5.0, 0.0)
    image.header.set_qform(moved, code=1)
    nib.save(nib.Nifti1Image(np.asanyarray(image.dataobj), image.affine, image.header), str(path))
    with pytest.warns(GeometryWarning, match="qform and sform place the volume up to 5 mm apart") as caught:
        load_volume(path)
    assert str(path) in str(caught[0].message)
    agreeing = _write(tmp_path / "fine_FLAIR.nii.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_volume(agreeing)  # no warning at all for a sane header


def test_the_cli_prints_a_header_warning_as_one_line(tmp_path, capsys):
    gt = _write(tmp_path / "gt_label-lesion_mask.nii.gz")
    pred = _write(tmp_path / "pred_mask.nii.gz", sform=False)
    _patch_pixdim(pred, (-2.0, 2.0, 2.0))
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--json"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"lesionseg evaluate: warning: {pred}: its header lists voxel sizes -2 x 2 x 2")


def test_running_out_of_memory_while_reading_names_the_file(tmp_path, monkeypatch):
    path = write_nifti(tmp_path / "sub-01_FLAIR.nii.gz", np.ones(SHAPE, np.float32))

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr("napari_lesionseg.data.volumes._convert_voxels", exhausted)  # the float32 copy fails
    with pytest.raises(InvalidInputError, match=r"not enough memory to read its 12x10x8 voxels") as caught:
        load_volume(path)
    assert str(caught.value).startswith(str(path))
