#!/usr/bin/env bash
# A candidate family for real scans (issue 18), NOT bundled: trained once on 2026-12-02 and kept out of
# napari_lesionseg/engine/weights because it fails on the real patient (docs/generator_family_2026-12-02.md).
# The bundled checkpoints are reproduced by scripts/train_bundled.sh.
#
# One network per loss, trained on the randomised training generator (data/phantom/randomized.py) at
# 1.5 mm: FLAIR is required, T1w, T2w, PDw and T1c are optional (modality dropout), so one checkpoint
# would serve FLAIR + T1w, FLAIR alone and FLAIR + T1w + T2w (+ PDw, T1c) protocols.
# fbeta_1.5 trains from scratch; the other three losses continue from it.
#
# Resumable: every step is skipped when its result exists, and an interrupted training run
# continues from its last saved state (`lesionseg train --resume`). Just run the script again.
#
# Usage: scripts/train_generator_family.sh                  # everything, one checkpoint after the other
#        scripts/train_generator_family.sh fbeta_1.5        # only these checkpoints
# Settings (environment): WORK (default out/generator-family), WEIGHTS (default WORK/weights), EPOCHS (the
# fbeta_1.5 network), LOSS_EPOCHS (the other losses), VAL_EVERY, THREADS (1), DEVICE (cpu).
# The run of 2026-12-02: THREADS=2 EPOCHS=48 VAL_EVERY=12 (fbeta_1.5 only; the others were stopped).
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-out/generator-family}
EPOCHS=${EPOCHS:-40}
LOSS_EPOCHS=${LOSS_EPOCHS:-8}
VAL_EVERY=${VAL_EVERY:-8}
THREADS=${THREADS:-1}
DEVICE=${DEVICE:-cpu}
WEIGHTS=${WEIGHTS:-$WORK/weights}
LESIONSEG=${LESIONSEG:-$( [ -x .venv/bin/lesionseg ] && echo .venv/bin/lesionseg || echo lesionseg )}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
INPUTS=FLAIR,T1w,T2w,PDw,T1c
OPTIONAL=T1w,T2w,PDw,T1c

# Generator subjects at 1.5 mm (about 5 s each). Seeds are used nowhere else in the project:
# training 30000-30159 (160 subjects), validation 31000-31011 (12), held-out test 32000-32007 (8).
make_subjects() {  # folder, count, first seed
  if [ ! -f "$1/.complete" ]; then
    rm -rf "$1"
    "$LESIONSEG" sample "$1" --generator training --n "$2" --seed "$3" --spacing 1.5
    touch "$1/.complete"
  fi
}

train_one() {  # name, epochs, loss options...
  local name=$1 epochs=$2
  shift 2
  "$LESIONSEG" train --data "$WORK/data/train" --val "$WORK/data/val" \
    --out "$WEIGHTS/$name.pt" --work-dir "$WORK/$name" \
    --modalities "$INPUTS" --optional "$OPTIONAL" --modality-dropout 0.3 \
    --preset compact --patch-size 32 --patches-per-subject 4 --batch-size 2 --epochs "$epochs" \
    --val-every "$VAL_EVERY" --val-tta none --seed 0 --device "$DEVICE" --threads "$THREADS" \
    --resume "$@" 2>&1 | tee -a "$WORK/$name.log"
}

mkdir -p "$WORK" "$WEIGHTS"
make_subjects "$WORK/data/train" 160 30000
make_subjects "$WORK/data/val" 12 31000
make_subjects "$WORK/data/test" 8 32000

names=("$@")
[ ${#names[@]} -gt 0 ] || names=(fbeta_1.5 fbeta_1.0 fbeta_3.0 focal)
for name in "${names[@]}"; do
  case $name in
    fbeta_1.5) train_one "$name" "$EPOCHS" --loss fbeta --beta 1.5 ;;
    fbeta_*) train_one "$name" "$LOSS_EPOCHS" --loss fbeta --beta "${name#fbeta_}" --init "$WEIGHTS/fbeta_1.5.pt" --lr 2e-4 ;;
    focal) train_one focal "$LOSS_EPOCHS" --loss focal --init "$WEIGHTS/fbeta_1.5.pt" --lr 2e-4 ;;
    *) echo "unknown checkpoint $name (expected fbeta_<beta> or focal)" >&2; exit 2 ;;
  esac
done

# The validation table (mean over the held-out subjects), from the checkpoints' own metadata.
"$PYTHON" scripts/validation_table.py "$WEIGHTS" | tee "$WORK/validation_table.md"
