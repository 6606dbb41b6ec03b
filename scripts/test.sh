#!/usr/bin/env bash
# Set up the environment, then run the test suite (GPU tests skip themselves without TensorRT and a GPU).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
exec "$root/.venv/bin/python" -m pytest "$@"
