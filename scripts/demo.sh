#!/usr/bin/env bash
# Opens the app: napari with the LesionSeg docks and a sample subject loaded.
# With a display it opens the window; without one (or with --headless) it runs the same app under a
# virtual X screen and writes screenshots plus a JSON summary to OUT_DIR (default: demo_out/).
#   bash scripts/demo.sh [--headless] [OUT_DIR]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
cd "$root"
headless=0
if [ "${1:-}" = "--headless" ]; then headless=1; shift; fi
out="${1:-$root/demo_out}"
unset QT_QPA_PLATFORM
if [ "$headless" = 0 ] && [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  exec .venv/bin/python -m napari_lesionseg._napari.demo
fi
exec xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python -m napari_lesionseg._napari.demo --headless "$out"
