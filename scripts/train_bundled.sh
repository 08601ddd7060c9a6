#!/usr/bin/env bash
# Reproduce the bundled checkpoints napari_lesionseg/engine/weights/{fbeta_1.0,fbeta_1.5,fbeta_3.0,focal}.pt
# and the modality-subset ones {fbeta_1.5_flair-t1w,fbeta_1.5_flair}.pt, the generator-trained
# fbeta_1.5_generator.pt (FLAIR required; T1w, T2w, PDw, T1c optional; 1.5 mm), the generator-trained
# fbeta_1.5_generator-flair.pt and fbeta_1.5_generator-flair-t1w.pt (one input set each; 1.5 mm), the
# generator-trained {fbeta_1.0,fbeta_3.0,focal}_generator.pt (continued from fbeta_1.5_generator)
# and their validation table (docs/TRAINING.md explains every choice).
#
# Resumable: every step is skipped when its result exists, and an interrupted training run
# continues from its last saved state (`lesionseg train --resume`). Just run the script again.
#
# Usage: scripts/train_bundled.sh                  # everything, one checkpoint after the other
#        scripts/train_bundled.sh fbeta_1.5 focal  # only these checkpoints
# Settings (environment): WORK (default out/train), EPOCHS (17, the F-beta networks), FOCAL_EPOCHS (51),
# VAL_EVERY (17), THREADS (1), DEVICE (cpu).
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-out/train}
EPOCHS=${EPOCHS:-17}
FOCAL_EPOCHS=${FOCAL_EPOCHS:-51}
SUBSET_EPOCHS=${SUBSET_EPOCHS:-34}  # fewer inputs: twice the epochs reach the four-input model's DSC
VAL_EVERY=${VAL_EVERY:-17}
THREADS=${THREADS:-1}
DEVICE=${DEVICE:-cpu}
WEIGHTS=${WEIGHTS:-napari_lesionseg/engine/weights}
LESIONSEG=${LESIONSEG:-$( [ -x .venv/bin/lesionseg ] && echo .venv/bin/lesionseg || echo lesionseg )}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}

# Phantom subjects at 2 mm. Seeds are disjoint from the sample data's (>= 9000):
# training 100-115 (16 subjects), validation 500-503 (4 subjects); the lesion load cycles with the seed.
make_subjects() {  # folder, count, first seed
  if [ ! -f "$1/.complete" ]; then
    rm -rf "$1"
    "$LESIONSEG" sample "$1" --n "$2" --seed "$3" --spacing 2
    touch "$1/.complete"
  fi
}

# Training-generator subjects at 1.5 mm (data/phantom/randomized.py), for fbeta_1.5_generator. Seeds used nowhere
# else: training 30000-30047 (48 subjects), validation 31000-31003 (4).
make_generator_subjects() {  # folder, count, first seed
  if [ ! -f "$1/.complete" ]; then
    rm -rf "$1"
    "$LESIONSEG" sample "$1" --generator training --n "$2" --seed "$3" --spacing 1.5
    touch "$1/.complete"
  fi
}

make_generator_data() {
  make_generator_subjects "$WORK/generator/train" 48 30000
  make_generator_subjects "$WORK/generator/val" 4 31000
}

# What every generator-trained checkpoint shares; the caller adds its inputs, length and loss.
train_on_generator() {  # name, training folder, validation folder, options...
  local name=$1 train=$2 val=$3
  shift 3
  "$LESIONSEG" train --data "$train" --val "$val" --out "$WEIGHTS/$name.pt" --work-dir "$WORK/$name" \
    --brain-patches 0.25 --preset compact --patch-size 32 --patches-per-subject 4 --batch-size 2 \
    --val-tta none --seed 0 --device "$DEVICE" --threads "$THREADS" --resume "$@" 2>&1 | tee -a "$WORK/$name.log"
}

# FLAIR required, the others optional (modality dropout).
ANY_INPUTS=(--modalities FLAIR,T1w,T2w,PDw,T1c --optional T1w,T2w,PDw,T1c --modality-dropout 0.3)

# The run of 2026-12-02 (session 8): 9,000 steps, 25 min on the 2-core VM with 2 threads.
train_generator() {
  make_generator_data
  train_on_generator fbeta_1.5_generator "$WORK/generator/train" "$WORK/generator/val" "${ANY_INPUTS[@]}" \
    --epochs 100 --max-steps 9000 --val-every 40
}

# One network per input set on the same generator subjects (session 9): the FLAIR alone (all 48), and
# FLAIR + T1w (the 39 of them with a T1w, linked into their own folder: the T1w is required).
link_subjects_with() {  # source folder, modality, target folder
  mkdir -p "$3"
  for subject in "$1"/sub-*/; do
    name=$(basename "$subject")
    if compgen -G "$subject${name}_$2.nii*" > /dev/null; then ln -sfn "$(cd "$subject" && pwd)" "$3/$name"; fi
  done
}

train_generator_flair() {
  make_generator_data
  train_on_generator fbeta_1.5_generator-flair "$WORK/generator/train" "$WORK/generator/val" --modalities FLAIR \
    --epochs 100 --max-steps 9000 --val-every 40
}

train_generator_flair_t1w() {
  make_generator_data
  link_subjects_with "$WORK/generator/train" T1w "$WORK/generator/train-t1w"
  link_subjects_with "$WORK/generator/val" T1w "$WORK/generator/val-t1w"
  train_on_generator fbeta_1.5_generator-flair-t1w "$WORK/generator/train-t1w" "$WORK/generator/val-t1w" \
    --modalities FLAIR,T1w --epochs 200 --max-steps 9000 --val-every 50
}

# The paper's other losses for the generator-trained network (session 9): each continues from
# fbeta_1.5_generator for 3,000 steps at its last learning rate, on the same subjects and inputs.
# `--warm-start`: a family member of its own, not a fine-tune (no `parent`, so `--beta` may pick it);
# the start stays in training.init_checkpoint.
train_generator_loss() {  # name, loss options...
  local name=$1
  shift
  [ -f "$WEIGHTS/fbeta_1.5_generator.pt" ] || train_generator
  make_generator_data
  train_on_generator "$name" "$WORK/generator/train" "$WORK/generator/val" "${ANY_INPUTS[@]}" \
    --init "$WEIGHTS/fbeta_1.5_generator.pt" --warm-start --epochs 40 --max-steps 3000 --lr 2e-4 --val-every 16 "$@"
}

train_one() {  # name, epochs, loss options...
  local name=$1 epochs=$2
  shift 2
  "$LESIONSEG" train --data "$WORK/data/train" --val "$WORK/data/val" \
    --out "$WEIGHTS/$name.pt" --work-dir "$WORK/$name" \
    --preset compact --patch-size 32 --patches-per-subject 4 --batch-size 2 --epochs "$epochs" \
    --val-every "$VAL_EVERY" --val-tta none --seed 0 --device "$DEVICE" --threads "$THREADS" \
    --resume "$@" 2>&1 | tee -a "$WORK/$name.log"
}

mkdir -p "$WORK" "$WEIGHTS"
make_subjects "$WORK/data/train" 16 100
make_subjects "$WORK/data/val" 4 500

names=("$@")
[ ${#names[@]} -gt 0 ] || names=(fbeta_1.0 fbeta_1.5 fbeta_3.0 focal fbeta_1.5_flair-t1w fbeta_1.5_flair fbeta_1.5_generator
  fbeta_1.5_generator-flair fbeta_1.5_generator-flair-t1w fbeta_1.0_generator fbeta_3.0_generator focal_generator)
for name in "${names[@]}"; do
  case $name in
    fbeta_1.5_flair-t1w) train_one "$name" "$SUBSET_EPOCHS" --loss fbeta --beta 1.5 --modalities FLAIR,T1w ;;
    fbeta_1.5_flair) train_one "$name" "$SUBSET_EPOCHS" --loss fbeta --beta 1.5 --modalities FLAIR ;;
    fbeta_1.5_generator) train_generator ;;
    fbeta_1.5_generator-flair) train_generator_flair ;;
    fbeta_1.5_generator-flair-t1w) train_generator_flair_t1w ;;
    fbeta_1.0_generator) train_generator_loss "$name" --loss fbeta --beta 1.0 ;;
    fbeta_3.0_generator) train_generator_loss "$name" --loss fbeta --beta 3.0 ;;
    focal_generator) train_generator_loss "$name" --loss focal ;;
    fbeta_*) train_one "$name" "$EPOCHS" --loss fbeta --beta "${name#fbeta_}" ;;
    focal) train_one focal "$FOCAL_EPOCHS" --loss focal ;;
    *) echo "unknown checkpoint $name (expected fbeta_<beta> or focal)" >&2; exit 2 ;;
  esac
done

# The validation table (mean over the held-out subjects), from the checkpoints' own metadata.
"$PYTHON" scripts/validation_table.py "$WEIGHTS" | tee "$WORK/validation_table.md"
