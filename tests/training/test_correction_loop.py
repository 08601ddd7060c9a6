"""Parts of the fine-tune loop: the held-out slab crop, its score, and the CPU threads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_lesionseg.training.correction_loop import cpu_threads, held_out_part, score_held_out
from napari_lesionseg.training.data import TrainingSubject


class _Echo(torch.nn.Module):
    """A 'network' whose logits are its first channel: the slab's score is known in advance."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images[:, :1]


def test_held_out_slab_is_cropped_to_the_head_with_context_and_scored_on_its_rows():
    image = np.zeros((1, 40, 30, 30), np.float32)
    image[:, :, 5:25, 6:26] = -5.0  # the head: network says "no lesion" everywhere in it
    mask = np.zeros((40, 30, 30), bool)
    mask[20:24, 10:14, 10:14] = True  # one lesion in the slab
    image[0, 20:24, 10:14, 10:12] = 5.0  # found in half
    image[0, 2:5, 10:14, 10:14] = 5.0  # a false positive outside the slab: not counted
    image[0, 26:28, 20:22, 20:22] = 5.0  # a false positive inside the slab
    held_out = held_out_part(TrainingSubject("s", image, mask, (1.0, 1.0, 1.0)), (18, 30), (8, 8, 8))
    assert held_out.image.shape == (1, 16, 20, 20) and held_out.mask.shape == (12, 20, 20)
    assert held_out.rows == slice(2, 14)
    score = score_held_out(_Echo(), held_out, (8, 8, 8), "cpu", "float32")
    assert score["dsc"] == pytest.approx(2 * 32 / (32 + 8 + 64)) and score["fp_lesions"] == 1
    assert held_out_part(TrainingSubject("s", image, mask, (1.0, 1.0, 1.0)), (5, 5), (8, 8, 8)) is None


def test_threads_are_set_for_the_block_and_restored():
    cpu = torch.device("cpu")
    before = torch.get_num_threads()
    with cpu_threads(1, cpu) as threads:
        assert threads == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == before
    with cpu_threads(None, cpu) as threads:
        assert threads in (1, before)
