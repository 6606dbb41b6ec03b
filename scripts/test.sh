#!/usr/bin/env bash
# Set up the environments, then run the test suite (GPU tests skip themselves without TensorRT and a GPU).
# The main suite runs in .venv (numpy 2); the serving tests (tests/serving) run again in .venv-serve, where
# PyTriton and tritonclient are installed (numpy < 2); in .venv the ones that need them skip with the reason.
# The tests marked 'runtime' run again in .venv-runtime, the install without PyTorch.
# Options (e.g. -m "not slow") are passed to every run; with test paths, only the main run happens.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
# each run's temp files go to a fresh short folder (Ray's socket paths live inside it; pytest's own default
# grows with its run counter), removed when the runs end
temp="$(mktemp -d /tmp/fcn-tests.XXXXXX)"
trap 'rm -rf "$temp"' EXIT
"$root/.venv/bin/python" -m pytest --basetemp "$temp/main" "$@"
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
  if [ -z "${FCN_DEPLOY_NO_RUNTIME:-}" ]; then
    echo "fcn-deploy: runtime tests in .venv-runtime (no PyTorch)"
    FCN_DEPLOY_RUNTIME_ONLY=1 "$root/.venv-runtime/bin/python" -m pytest --basetemp "$temp/runtime" "$@"
  fi
  if [ -z "${FCN_DEPLOY_NO_SERVE:-}" ]; then
    echo "fcn-deploy: serving tests in .venv-serve"
    "$root/.venv-serve/bin/python" -m pytest --basetemp "$temp/serve" tests/serving "$@"
  fi
fi
