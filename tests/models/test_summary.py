"""Parameter counts and FLOPs per patch, checked against hand-computed multiply-accumulates."""

from __future__ import annotations

from napari_lesionseg.models import build_model, model_config
from napari_lesionseg.models.summary import count_parameters, flops_per_patch, summary_table


def test_count_parameters_counts_trainable_weights():
    model = build_model(model_config("unet", in_channels=1, base_features=2, depth=0, convs_per_level=1))
    assert count_parameters(model) == (1 * 2 * 27 + 2) + (2 * 1 + 1)
    model.classifier.weight.requires_grad_(False)
    assert count_parameters(model) == (1 * 2 * 27 + 2) + 1
    assert count_parameters(model, trainable_only=False) == (1 * 2 * 27 + 2) + (2 * 1 + 1)


def test_flops_of_a_single_level_unet_by_hand():
    config = model_config("unet", in_channels=1, base_features=2, depth=0, convs_per_level=1)
    # 3x3x3 conv 1 -> 2 maps on 8 voxels, then the 1x1x1 classifier 2 -> 1 on 8 voxels
    assert flops_per_patch(config, (2, 2, 2)) == 2 * (8 * 2 * 1 * 27 + 8 * 1 * 2)


def test_flops_count_transposed_convolutions_by_input_size():
    config = model_config("unet", in_channels=1, base_features=1, depth=1, convs_per_level=1)
    macs = (
        8 * 1 * 27  # level 0: 1 -> 1 on 2^3 voxels
        + 1 * 2 * 27  # level 1: 1 -> 2 on one voxel
        + 2 * 1 * 8  # transposed 2x2x2: 2 input values, each scattered through 1 x 8 weights
        + 8 * 2 * 27  # decoder: 2 -> 1 on 2^3 voxels
        + 8 * 1  # classifier
    )
    assert flops_per_patch(config, (2, 2, 2)) == 2 * macs


def test_flops_scale_with_patch_volume():
    config = model_config("compact")
    assert flops_per_patch(config, (64, 32, 32)) == 2 * flops_per_patch(config, (32, 32, 32))
    assert flops_per_patch(config) == flops_per_patch(config, (32, 32, 32))


def test_summary_table_lists_every_preset_with_its_parameter_count():
    table = summary_table()
    lines = table.splitlines()
    assert lines[0].startswith("| preset |")
    names = [line.split("|")[1].strip() for line in lines[2:]]
    assert names == ["paper", "compact", "unet", "paper, input_stride2"]
    paper_params = count_parameters(build_model(model_config("paper")))
    assert f"{paper_params:,}" in lines[2]
    assert "64x64x64" in lines[2] and "128x128x128" in lines[5]
