"""DistributedDataParallel: two CPU processes under torchrun (Gloo) end with identical weights."""

import hashlib
import json
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import write_subject

from napari_lesionseg.engine.checkpoints import load_checkpoint

#: Each rank trains with the engine and writes a digest of its final network (weights and buffers).
RANK_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, os, sys
    from pathlib import Path

    import torch

    from napari_lesionseg.training import TrainingConfig, train

    torch.set_num_threads(1)
    result = train(TrainingConfig(**json.loads(sys.argv[1])))
    digest = hashlib.sha256()
    for key, value in sorted(result.model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    rank = os.environ["RANK"]
    Path(sys.argv[2], f"rank{rank}.json").write_text(
        json.dumps({"digest": digest.hexdigest(), "steps": result.steps, "world": os.environ["WORLD_SIZE"]})
    )
    """
)

TINY = {
    "growth_rate": 2, "initial_features": 4, "dense_blocks_down": 1, "layers_per_block": 1,
    "multiscale_features": 2, "bottleneck_factor": 1, "input_stride2": False,
}  # fmt: skip


def _digest(state_dict):
    digest = hashlib.sha256()
    for key, value in sorted(state_dict.items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@pytest.mark.slow
def test_two_gloo_processes_end_with_identical_weights(tmp_path):
    for seed in (1, 2):
        write_subject(tmp_path / "train", name=f"sub-0{seed}", shape=(16, 16, 16), seed=seed, suffix=".nii")
    out = tmp_path / "ddp.pt"
    config = {
        "data": [str(tmp_path / "train")], "out": str(out), "model": TINY, "patch_size": [8, 8, 8],
        "patches_per_subject": 2, "batch_size": 1, "epochs": 2, "device": "cpu", "seed": 5,
    }  # fmt: skip
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(script), json.dumps(config), str(tmp_path),
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=180, env=_cpu_env())
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world"] == ranks[1]["world"] == "2"
    # 2 subjects x 2 patches = 4 patches per epoch, 2 per rank, batch 1: 2 steps per epoch on each rank
    assert ranks[0]["steps"] == ranks[1]["steps"] == 4
    assert ranks[0]["digest"] == ranks[1]["digest"]
    model, metadata = load_checkpoint(out)  # written by rank 0 only
    assert _digest(model.state_dict()) == ranks[0]["digest"]
    assert metadata.training["world_size"] == 2 and metadata.training["steps"] == 4
    assert not any(torch.isnan(p).any() for p in model.parameters())


def _cpu_env():
    import os

    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
