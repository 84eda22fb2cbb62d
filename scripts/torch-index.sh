#!/usr/bin/env bash
# Prints the package index torch should come from (empty: the default index).
#
# $TORCH_INDEX wins when set, even to "". Otherwise Linux machines without an NVIDIA driver get
# PyTorch's CPU index, when it answers: the default index's Linux build of torch bundles CUDA
# (several GB) that such a machine never uses. macOS and Windows builds on the default index are
# CPU builds already.
set -euo pipefail
CPU_INDEX=https://download.pytorch.org/whl/cpu

if [ -n "${TORCH_INDEX+set}" ]; then
    echo "$TORCH_INDEX"
elif [ "$(uname -s)" = Linux ] && ! command -v nvidia-smi >/dev/null; then
    if python3 -c "import urllib.request as u; u.urlopen('$CPU_INDEX/torch/', timeout=10)" 2>/dev/null; then
        echo "$CPU_INDEX"
    else
        echo "setup: $CPU_INDEX does not answer; torch comes from the default index" >&2
        echo ""
    fi
else
    echo ""
fi
