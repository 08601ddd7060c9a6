"""The sample subjects shipped with the package (2 mm phantoms made by `lesionseg sample`)."""

from __future__ import annotations

from pathlib import Path

from napari_lesionseg.errors import LesionSegError

__all__ = ["sample_data_dir", "sample_subjects", "sample_subject"]


def sample_data_dir() -> Path:
    """The folder of sample subjects: inside the installed package, or the repository's `sample_data/`.

    A wheel carries the folder as `napari_lesionseg/sample_data` (hatch force-include); an editable
    install reads it straight from the repository.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "sample_data", here.parent.parent / "sample_data"):
        if candidate.is_dir() and any(p.is_dir() for p in candidate.iterdir()):
            return candidate
    raise LesionSegError(
        f"no sample subjects found in {here.parent / 'sample_data'} or {here.parent.parent / 'sample_data'}; "
        "reinstall napari-lesionseg, or make some with `lesionseg sample OUT_DIR`"
    )


def sample_subjects() -> list[Path]:
    """Subject folders among the sample data, sorted by name."""
    return sorted(p for p in sample_data_dir().iterdir() if p.is_dir() and not p.name.startswith("."))


def sample_subject(index: int = 0) -> Path:
    """One sample subject folder (the first by default)."""
    subjects = sample_subjects()
    if not 0 <= index < len(subjects):
        raise LesionSegError(f"sample subject {index} does not exist: there are {len(subjects)} (0..{len(subjects) - 1})")
    return subjects[index]
