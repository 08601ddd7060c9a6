#!/usr/bin/env bash
# The checks that need a CUDA GPU, on a machine whose python3 already has torch with CUDA.
#
#   bash scripts/gpu_check.sh [OUT_DIR]
#
# 1. the tests marked `cuda` (autocast against float32 on the CPU, the real out-of-memory path,
#    mixed-precision training);
# 2. `lesionseg bench --device cuda` (both networks, both workloads, MONAI at equal work);
# 3. training the paper network on the sample subjects under torchrun with NCCL (DDP, one GPU);
# 4. `lesionseg predict --device cuda` with a bundled checkpoint.
# Wheels for missing pure-Python dependencies (nibabel, monai) may be put in .whl/ beforehand.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-out/gpu}}"
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

step() { printf '\n=== %s (%s)\n' "$1" "$(date +%T)"; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())'

step "tests marked cuda"
python3 -m pytest -q -p no:cacheprovider -m cuda -o addopts="" tests/engine/test_run.py tests/training/test_loop.py \
  2>&1 | tee "$OUT_DIR/pytest-cuda.txt"

step "lesionseg bench --device cuda"
python3 -m napari_lesionseg.cli bench --suite inference --device cuda --json >"$OUT_DIR/bench-cuda.json"
python3 - "$OUT_DIR/bench-cuda.json" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
print(json.dumps(report, indent=1)[:6000])
EOF

step "DDP training under torchrun (NCCL), paper network"
python3 -m torch.distributed.run --standalone --nproc_per_node 1 -m napari_lesionseg.cli train \
  --data sample_data --preset paper --device cuda --batch-size 4 --patches-per-subject 32 --epochs 4 \
  --out "/tmp/gpu_check/paper_ddp.pt" --quiet 2>&1 | tee "$OUT_DIR/train-ddp.txt"
python3 - <<'EOF'
from napari_lesionseg.engine.checkpoints import read_metadata
meta = read_metadata("/tmp/gpu_check/paper_ddp.pt")
print({k: meta.training[k] for k in ("steps", "elapsed_s", "world_size", "machine", "torch")})
EOF

step "lesionseg predict --device cuda"
python3 -m napari_lesionseg.cli predict sample_data/sub-phantom002 --checkpoint fbeta_1.5 --device cuda \
  --prob-out /tmp/gpu_check/prob.nii.gz --mask-out /tmp/gpu_check/mask.nii.gz
python3 -m napari_lesionseg.cli evaluate --pred /tmp/gpu_check/mask.nii.gz --prob /tmp/gpu_check/prob.nii.gz \
  --gt sample_data/sub-phantom002/sub-phantom002_label-lesion_mask.nii.gz 2>&1 | tee "$OUT_DIR/evaluate.txt"
step "done"
