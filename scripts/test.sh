#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: set-up (idempotent), then pytest under a virtual X screen.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/data/test_volumes.py -x`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
cd "$root"
unset QT_QPA_PLATFORM  # napari's canvas needs a real (virtual) X screen, never Qt's offscreen platform
exec xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
