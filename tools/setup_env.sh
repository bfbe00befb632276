#!/usr/bin/env bash
# Create the project's virtual environment in .venv (once) and install the
# package into it with the given extras. Sourced by run.sh and test.sh.
#
# torch: the CPU build 2.13.0 is installed unless torch is already importable
# in .venv. GPU users who want their own build create .venv with it first
# (or set LORA_EMBEDDING_KEEP_TORCH=1 and install torch themselves).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo/.venv"
extras=${1:-ui}

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
if ! "$venv/bin/python" -c "import torch" >/dev/null 2>&1 && [ -z "${LORA_EMBEDDING_KEEP_TORCH:-}" ]; then
    "${pip[@]}" "torch==2.13.0"
fi
"${pip[@]}" -e "$repo[$extras]"
