#!/usr/bin/env bash
# Creates .venv and installs everything surfrecon needs, from nothing. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# Open3D's wheel links against libusb and libgomp; install them from Debian when missing.
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        echo "setup: installing libusb-1.0-0 (needed by open3d)"
        apt-get update -qq && apt-get install -y -qq libusb-1.0-0 libgomp1 >/dev/null
    else
        echo "setup: please install libusb-1.0-0 (needed by open3d)" >&2
    fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel 2>&1 | grep -v '^WARNING: Location' || true
# Pin torch first so that nothing pulls a newer (multi-GB CUDA) build.
.venv/bin/python -m pip install -q "torch==2.13.0" 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -m pip install -q -e ".[dev]" 2>&1 | grep -v '^WARNING: Location' || true
# Compile the CPU hash-grid kernel now so that the first fit does not wait for it.
.venv/bin/python -m recon.encodings.build || echo "setup: C++ kernel did not build; the pure-PyTorch path will be used"

# The web page's front-end packages (three.js), served by the service itself: no CDN at run time.
if [ ! -d service/web/node_modules/three ]; then
    if command -v npm >/dev/null; then
        echo "setup: installing the web page's packages (npm ci in service/web)"
        (cd service/web && npm ci --no-audit --no-fund --loglevel=error) \
            || echo "setup: npm ci failed; the page will load without its 3D viewer" >&2
    else
        echo "setup: npm not found; the web page will load without its 3D viewer (install nodejs and npm)" >&2
    fi
fi

# Debian's Chromium for the browser tests (playwright drives it; it never downloads a browser).
if [ ! -x /usr/bin/chromium ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        echo "setup: installing chromium (for the web page's browser tests)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
            || echo "setup: chromium did not install; the browser tests will be skipped" >&2
    else
        echo "setup: /usr/bin/chromium is missing; the browser tests will be skipped (apt-get install chromium)" >&2
    fi
fi
