"""Training: patch sampling, the paper's schedule, the (DDP-ready) loop, validation and resume.

Example:
    >>> from napari_lesionseg.training import TrainingConfig, train
    >>> config = TrainingConfig(data=["train/"], val=["val/"], out="fbeta_1.5.pt", beta=1.5)  # doctest: +SKIP
    >>> result = train(config, on_progress=print)                                          # doctest: +SKIP

Modules: `config` (what to run), `data` (subjects in memory), `sampling` (patch selection and
augmentation), `schedule` (learning rate), `loop` (the engine), `validation`, `export`
(checkpoint metadata), `state` and `logs` (resume and history files), `distributed` (DDP).
"""

from napari_lesionseg.training.config import TrainingConfig, TrainingProgress, TrainingResult
from napari_lesionseg.training.data import TrainingSubject, load_training_subjects, subject_from_arrays
from napari_lesionseg.training.finetune import fine_tune
from napari_lesionseg.training.loop import iter_training, train
from napari_lesionseg.training.sampling import PatchSampler, valid_patch_starts
from napari_lesionseg.training.schedule import PaperSchedule, make_scheduler
from napari_lesionseg.training.validation import validate

__all__ = [
    "PaperSchedule",
    "PatchSampler",
    "TrainingConfig",
    "TrainingProgress",
    "TrainingResult",
    "TrainingSubject",
    "fine_tune",
    "iter_training",
    "load_training_subjects",
    "make_scheduler",
    "subject_from_arrays",
    "train",
    "valid_patch_starts",
    "validate",
]
