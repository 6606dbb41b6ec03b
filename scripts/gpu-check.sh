#!/usr/bin/env bash
# PyTorch on one CUDA GPU (no TensorRT, no network needed): eager FP32/TF32/FP16 and channels-last latency of a
# random-weight fcn32s at 320x480 (batch 1 and 8), `infer --device cuda` on a synthetic folder and on 2048x2048
# and 8192x8192 images (tiled), and the argmax parity of CUDA results with the CPU (benchmarks/gpu_check.py).
# Then, when TensorRT is importable, the gpu-marked TensorRT tests and a build/infer/parity round trip of a
# random-weight export (FP32 engine, its sidecar's parity record shown); otherwise it says plainly it skipped them.
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
if [ "$status" -ne 0 ]; then
  echo "skipped: the TensorRT tests and the build/infer/parity round trip (the PyTorch GPU check failed first)" >&2
  exit "$status"
fi

# --- TensorRT: the gpu-marked tests and a round trip, only where TensorRT is importable ----------------------
if ! trt_version="$("$python" -c 'import tensorrt; print(tensorrt.__version__)' 2>/dev/null)"; then
  echo "skipped: the gpu-marked TensorRT tests and the build/infer/parity round trip: TensorRT is not importable" \
       "by $python (pip install 'fcn-deploy[tensorrt]' to run them)" >&2
  exit 0
fi
echo "TensorRT $trt_version: gpu-marked TensorRT tests" >&2
trt_timeout="${GPU_CHECK_TRT_TIMEOUT_S:-540}"
timeout --kill-after=10 "$trt_timeout" "$python" -m pytest -m gpu -q -p no:cacheprovider \
  "$root/tests/runtime/test_trt_backend.py" "$root/tests/test_build.py" || status=$?
[ "$status" -eq 0 ] || { echo "error: the gpu-marked TensorRT tests failed (exit $status)" >&2; exit "$status"; }

echo "TensorRT $trt_version: build/infer/parity round trip of a random-weight export" >&2
trip="$workdir/round-trip"
mkdir -p "$trip"
cli() { timeout --kill-after=10 "$trt_timeout" "$python" -m fcn_deploy.cli "$@"; }
(
  set -e
  cd "$trip"
  "$python" -c 'import sys, torch
from fcn_deploy.checkpoint import Checkpoint, save_checkpoint
from fcn_deploy.model import build_model
from fcn_deploy.spec import ModelSpec, ShapeRange
torch.manual_seed(0)
spec = ModelSpec(arch="fcn32s", crop_size=(128, 192), shape_range=ShapeRange((1, 64, 64), (1, 128, 192), (2, 256, 256)))
save_checkpoint(sys.argv[1], build_model("fcn32s", 21), Checkpoint(spec=spec))' fcn32s.pt
  cli data synth --out voc --num 8 --size 128x192
  cli export fcn32s.pt --out export/fcn.onnx
  cli build export/fcn.onnx --fp32 --reference fcn32s.pt --parity-data voc --out engines/fcn.fp32.engine
  cli infer engines/fcn.fp32.engine voc/JPEGImages --out masks
  cli parity engines/fcn.fp32.engine --reference fcn32s.pt --data voc --report parity/engine.md
) || status=$?
[ "$status" -eq 0 ] || { echo "error: the TensorRT round trip failed (exit $status)" >&2; exit "$status"; }
echo "TensorRT round trip: build, infer and parity passed" >&2
exit 0
