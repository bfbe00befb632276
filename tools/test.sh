#!/usr/bin/env bash
# Install into .venv with the test extras and run the test suite; arguments go to pytest.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
source "$repo/tools/setup_env.sh" "ui,test"
cd "$repo"
exec "$repo/.venv/bin/python" -m pytest "$@"
