#!/usr/bin/env bash
# The main job on a built-in default: synthesise a small VOC-layout dataset, train a small FCN briefly on the CPU,
# export it to ONNX, segment a few images, check parity with PyTorch, make the precision artifacts, and stop at the
# GPU-only engine build with the reason when no GPU is present.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FCN_DEPLOY_NO_SERVE=1 FCN_DEPLOY_NO_RUNTIME=1 bash "$root/scripts/setup.sh"  # the demo needs only .venv
cd "$root"
fcn() { "$root/.venv/bin/fcn-deploy" "$@"; }
step() { printf '\n==> %s\n' "$*" >&2; }

data=demo/data/VOC2012
step "synthesising a VOC-layout dataset in $data"
fcn data synth --out "$data" --num 96 --size 128x192 --seed 0 --overwrite

step "training fcn32s briefly on the CPU"
# d2l's lr 0.001 learns too slowly from random weights for a short run; momentum and a cosine schedule do it
fcn train --data "$data" --arch fcn32s --epochs 8 --crop 96x128 --batch-size 8 --lr 0.03 --momentum 0.9 \
  --weight-decay 1e-4 --lr-schedule cosine --out-dir checkpoints

step "exporting the best checkpoint to export/fcn.onnx"
fcn export

images="$data/JPEGImages"
voc="../shared/voc-sample/VOCdevkit/VOC2012"
[ -d "$voc/JPEGImages" ] && images="$voc/JPEGImages"
step "segmenting the images in $images"
fcn infer "$images" --out demo/masks --overwrite

step "parity of the ONNX model with the PyTorch checkpoint on the validation split"
fcn parity export/fcn.onnx --reference checkpoints/fcn32s-best.pt --data "$data" --split val --out-dir demo/parity \
  --html demo/parity/parity.html

step "INT8 (CPU target) calibration on training crops"
fcn calibrate export/fcn.onnx --data "$data" --num 32 --crop 96x128 --target cpu
fcn parity export/fcn.int8-cpu.onnx --reference checkpoints/fcn32s-best.pt --data "$data" --split val \
  --out-dir demo/parity-int8 --html demo/parity-int8/parity.html

step "FP16 precision artifact and TensorRT engine build"
set +e
fcn build --fp16 --parity-data "$data"
status=$?
set -e
if [ "$status" -eq 2 ]; then
  echo "(the TensorRT engine needs a CUDA GPU and TensorRT; the FP16 ONNX and its parity check were made)" >&2
elif [ "$status" -ne 0 ]; then
  exit "$status"
fi

for report in demo/parity/parity.md demo/parity-int8/parity.md; do
  step "parity with PyTorch: $(sed -n 's/^- model: //p' "$report")"
  sed -n '/^## Overall/,/^## Per image/p' "$report" | sed '1,2d;$d' >&2
done

step "done"
cat >&2 <<SUMMARY
produced:
  $data                  synthetic dataset (VOC layout)
  checkpoints/           trained weights + model spec
  export/fcn.onnx        ONNX model (+ fcn.onnx.json sidecar); export/fcn.fp16.onnx, export/fcn.int8-cpu.onnx
  demo/masks/            VOC palette masks and summary.json
  demo/parity/, demo/parity-int8/   parity reports (Markdown + JSON + HTML pictures) of the FP32 and INT8 ONNX
  calibration/           INT8 crop plan and per-tensor ranges; FP16 parity report
SUMMARY
