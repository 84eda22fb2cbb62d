#!/usr/bin/env bash
# Creates .venv and installs surfrecon into it, from nothing; `make run` and `make test` call it.
#
#   scripts/setup.sh run     the service: torch, the package (editable) and its dependencies,
#                            the C++ hash-grid kernel, the web page's three.js (npm ci)
#   scripts/setup.sh test    the same plus the test stack (the `test` extra) and Chromium
#
# Every version comes from constraints.txt. Any failing step stops set-up with its message and
# a non-zero status, and then no stamp is written, so the next `make` tries again. On success
# it writes .venv/.installed-run (and .venv/.installed-test for `test`).
#
# TORCH_INDEX picks where torch comes from: unset, Linux machines without an NVIDIA driver get
# the CPU build (https://download.pytorch.org/whl/cpu) when that index answers; set it to a
# CUDA index (e.g. .../whl/cu128) for a GPU build, or to "" for the default index only.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
MODE=${1:-run}
case "$MODE" in
    run | test) ;;
    *) echo "usage: scripts/setup.sh run|test" >&2; exit 2 ;;
esac

say() { echo "setup: $*"; }
fail() { echo "setup: $*" >&2; exit 1; }

rm -f .venv/.installed-run .venv/.installed-test
as_root() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }
apt_install() {
    as_root || fail "$1 is missing; install it (Debian/Ubuntu: apt-get install $2) and run set-up again"
    say "installing $2 (Debian)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $2 >/dev/null
}

# Tools set-up itself needs, checked first so that a missing one is named at once.
command -v "$PYTHON" >/dev/null || fail "$PYTHON not found (Python 3.11 or newer is needed)"
command -v c++ >/dev/null || command -v g++ >/dev/null || apt_install "a C++ compiler" g++
command -v npm >/dev/null || apt_install "npm (for the web page's three.js)" npm
# Open3D's wheel links against libgomp and libusb.
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
    apt_install "libusb-1.0 (needed by open3d)" "libusb-1.0-0 libgomp1"
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install -q -c constraints.txt)
.venv/bin/python -m pip install -q --upgrade pip
"${PIP[@]}" setuptools wheel

# torch first, from the chosen index: the package's own `torch>=...` would otherwise be
# satisfied from the default index, which is a multi-GB CUDA build on Linux.
TORCH_INDEX=$(bash scripts/torch-index.sh)
say "torch $(sed -n 's/^torch==//p' constraints.txt) from ${TORCH_INDEX:-the default index}"
"${PIP[@]}" ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} torch

if [ "$MODE" = test ]; then
    "${PIP[@]}" -e ".[test]"
else
    "${PIP[@]}" -e .
fi

# Compile the CPU hash-grid kernel now so that the first fit does not wait for it.
.venv/bin/python -m recon.encodings.build --strict

# The web page's three.js at the version package-lock.json pins (the service serves it: no CDN).
lock_version=$(.venv/bin/python -c "from pathlib import Path; from service.webassets import locked_three_version as v; print(v(Path('service/web')))")
have_version=none
if [ -f service/web/node_modules/three/package.json ]; then
    have_version=$(.venv/bin/python -c "import json; print(json.load(open('service/web/node_modules/three/package.json'))['version'])")
fi
if [ "$have_version" != "$lock_version" ]; then
    say "installing three.js $lock_version (npm ci in service/web)"
    (cd service/web && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi

if [ "$MODE" = test ]; then
    # Debian's Chromium for the browser tests (playwright drives it; it never downloads a browser).
    [ -x /usr/bin/chromium ] || apt_install "/usr/bin/chromium (for the browser tests)" chromium
fi

touch .venv/.installed-run
[ "$MODE" = test ] && touch .venv/.installed-test
say "done ($MODE)"
