#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine: headless Qt/OpenGL packages, a venv in .venv,
# the CPU build of torch (pinned first, so pip takes the wheel on disk, not a multi-GB CUDA build),
# then the package with its testing extra. Sourced by scripts/demo.sh and scripts/test.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.lesionseg-installed"

need_apt=0
for pkg in xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0 libgl1 libegl1 libdbus-1-3 libfontconfig1; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt=1
done
if [ "$need_apt" = 1 ]; then
  sudo_cmd=""; [ "$(id -u)" != 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
    xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0 \
    libgl1 libegl1 libdbus-1-3 libfontconfig1 >/dev/null
fi

if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  # The machine's on-disk package mirror makes pip warn about every folder it lacks: keep the log readable.
  quiet_pip() { "$venv/bin/pip" install -q "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
  quiet_pip "torch==2.13.0"
  quiet_pip -c "$root/constraints.txt" -e "$root[testing]"
  touch "$stamp"
fi
