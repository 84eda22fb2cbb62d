#!/usr/bin/env bash
# The install steps of both images (docker/api.Dockerfile, docker/worker-gpu.Dockerfile), and of
# tests/test_images.py, which runs this same script into a fresh directory:
#
#   docker/install.sh VENV SRC
#
# makes a venv at VENV; installs torch from $TORCH_INDEX (the CPU or a CUDA index; "" for the
# default one), then builds surfrecon's wheel from the source tree SRC (the build copies the web
# page's three.js from SRC/service/web/node_modules, filled by the images' node stage) and
# installs it with the `cluster` extra (Ray's dashboard and `ray start` extras); everything under
# SRC/constraints.txt, so every image has the Ray and torch versions set-up has. Last, it compiles
# the CPU hash-grid kernel into $TORCH_EXTENSIONS_DIR (g++ must be there).
set -euo pipefail
VENV=${1:?usage: docker/install.sh VENV SRC}
SRC=$(cd "${2:?usage: docker/install.sh VENV SRC}" && pwd)
PYTHON=${PYTHON:-python3}

"$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip)
"${pip[@]}" install -q -c "$SRC/constraints.txt" setuptools wheel
# --extra-index-url: the torch index holds the +cpu / +cuXXX builds, the default index the rest.
"${pip[@]}" install -q -c "$SRC/constraints.txt" ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} torch

dist=$(mktemp -d)
trap 'rm -rf "$dist"' EXIT
"${pip[@]}" wheel -q --no-deps --no-build-isolation -w "$dist" "$SRC"
wheel=$(echo "$dist"/surfrecon-*.whl)
"${pip[@]}" install -q -c "$SRC/constraints.txt" "${wheel}[cluster]"
"${pip[@]}" check
# From outside the source tree: the installed package, not SRC, must carry everything.
(cd / && "$VENV/bin/python" -m recon.encodings.build --strict)
