#!/usr/bin/env bash
# The main job on a built-in default: synthesise a small VOC-layout dataset, train a small FCN briefly on the CPU,
# export it to ONNX, segment a few images, check parity with PyTorch, make the precision artifacts, and stop at the
# GPU-only engine build with the reason when no GPU is present.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
fcn() { "$root/.venv/bin/fcn-deploy" "$@"; }
step() { printf '\n==> %s\n' "$*" >&2; }

data=demo/data/VOC2012
step "synthesising a VOC-layout dataset in $data"
fcn data synth --out "$data" --num 96 --size 160x224 --seed 0

step "training fcn32s briefly on the CPU"
fcn train --data "$data" --arch fcn32s --epochs 6 --crop 128x192 --batch-size 8 --lr 0.05 --out-dir checkpoints

step "exporting the best checkpoint to export/fcn.onnx"
fcn export

images="$data/JPEGImages"
voc="../shared/voc-sample/VOCdevkit/VOC2012"
[ -d "$voc/JPEGImages" ] && images="$voc/JPEGImages"
step "segmenting the images in $images"
fcn infer "$images" --out demo/masks --overwrite

step "parity of the ONNX model with the PyTorch checkpoint on the validation split"
fcn parity export/fcn.onnx --reference checkpoints/fcn32s-best.pt --data "$data" --split val --out-dir demo/parity

step "INT8 (CPU target) calibration on training crops"
fcn calibrate export/fcn.onnx --data "$data" --num 32 --crop 128x192 --target cpu

step "FP16 precision artifact and TensorRT engine build"
set +e
fcn build --fp16
status=$?
set -e
if [ "$status" -eq 2 ]; then
  echo "(the TensorRT engine needs a CUDA GPU and TensorRT; the FP16 ONNX and its parity check were made)" >&2
elif [ "$status" -ne 0 ]; then
  exit "$status"
fi

step "done"
cat >&2 <<SUMMARY
produced:
  $data                  synthetic dataset (VOC layout)
  checkpoints/           trained weights + model spec
  export/fcn.onnx        ONNX model (+ fcn.onnx.json sidecar); export/fcn.fp16.onnx, export/fcn.int8-cpu.onnx
  demo/masks/            VOC palette masks and summary.json
  demo/parity/           parity report (Markdown + JSON)
SUMMARY
