#!/usr/bin/env bash
# Rewrites constraints.txt (`make lock`): resolves the package with its test and cluster extras
# into a throw-away venv and records every version installed. Set-up and both images install
# under these constraints, so a laptop, CI, the API image and the GPU workers run the same
# versions (Ray must match across a cluster).
#
# torch stays at the version already locked unless TORCH_VERSION says otherwise; TORCH_INDEX as
# for set-up. The local build tag (+cpu, +cu128) is dropped: the lock pins the version, the
# index picks the build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ -z "${TORCH_VERSION:-}" ] && [ -f constraints.txt ]; then
    TORCH_VERSION=$(sed -n 's/^torch==//p' constraints.txt)
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m venv "$tmp/venv"
pip=("$tmp/venv/bin/python" -m pip)
"${pip[@]}" install -q --upgrade pip setuptools wheel
TORCH_INDEX=$(bash scripts/torch-index.sh)
"${pip[@]}" install -q ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} "torch${TORCH_VERSION:+==$TORCH_VERSION}"
"${pip[@]}" install -q -e ".[test,cluster]"
"${pip[@]}" check

py=$("$tmp/venv/bin/python" -c "import platform; print(platform.python_version(), platform.system(), platform.machine())")
{
    echo "# Versions for pip's -c: written by scripts/lock.sh (make lock), do not edit by hand."
    echo "# Resolved from .[test,cluster] on Python $py; used by scripts/setup.sh and docker/install.sh."
    "${pip[@]}" freeze --all --exclude-editable \
        | grep -v -E '^(pip|surfrecon)([=@ ]|$)' \
        | sed -E 's/^(torch==[^+]+)\+.*/\1/' \
        | LC_ALL=C sort -f
} > constraints.txt.new
mv constraints.txt.new constraints.txt
echo "lock: constraints.txt has $(grep -c '==' constraints.txt) pins (ray $(sed -n 's/^ray==//p' constraints.txt), torch $(sed -n 's/^torch==//p' constraints.txt))"
