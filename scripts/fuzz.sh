#!/usr/bin/env bash
# Run every fuzz target for longer than the test suite does, with fresh randomness:
#   bash scripts/fuzz.sh [EXAMPLES_PER_TARGET]      (default 20000; the suite runs a few hundred each)
# Targets: image decoding -> model input, the spec / sidecar / ONNX readers, the checkpoint reader, the crop plan
# and range table readers (tests/fuzz/), and the C API's argument checks from a C harness (tests/capi/).
# A failure prints the falsifying input; fix it and keep it as an @example (or a test) in the target's file.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
cd "$root"
export FCN_FUZZ_PROFILE=long FCN_FUZZ_EXAMPLES="${1:-20000}"
exec "$python" -m pytest -q -p no:warnings tests/fuzz tests/capi/test_capi_fuzz.py
