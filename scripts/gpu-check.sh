#!/usr/bin/env bash
# PyTorch on one CUDA GPU (no TensorRT, no network needed): eager FP32/TF32/FP16 and channels-last latency of a
# random-weight fcn32s at 320x480 (batch 1 and 8), `infer --device cuda` on a synthetic folder and on 2048x2048
# and 8192x8192 images (tiled), and the argmax parity of CUDA results with the CPU (benchmarks/gpu_check.py).
#
# Usage: scripts/gpu-check.sh RESULT.json      (or set OUT to a folder: writes $OUT/gpu-check.json)
# Python: $PYTHON, else .venv/bin/python, else python3. Exits 2 with the reason where no CUDA device is
# visible; never falls back to the CPU. Writes only RESULT.json and a temporary folder it removes; bounded by
# GPU_CHECK_TIMEOUT_S (default 540 s).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [ "$#" -ge 1 ]; then
  result="$1"
elif [ -n "${OUT:-}" ]; then
  result="$OUT/gpu-check.json"
else
  echo "error: no result path given" >&2
  echo "fix: scripts/gpu-check.sh RESULT.json, or set OUT to a folder" >&2
  exit 1
fi

python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python="python3"; fi
fi

workdir="$(mktemp -d "${TMPDIR:-/tmp}/fcn-gpu-check.XXXXXX")"
trap 'rm -rf "$workdir"' EXIT
export TMPDIR="$workdir"  # every temporary file of the run (and of its children) stays in the folder removed above
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"

status=0
timeout --kill-after=10 "${GPU_CHECK_TIMEOUT_S:-540}" \
  "$python" "$root/benchmarks/gpu_check.py" --out "$result" --workdir "$workdir" || status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  echo "error: the GPU check ran past ${GPU_CHECK_TIMEOUT_S:-540} s and was stopped" >&2
  echo "fix: raise GPU_CHECK_TIMEOUT_S, or look for a busy GPU (nvidia-smi)" >&2
fi
exit "$status"
