"""Evidence for an export change: the final ConvTranspose as a sub-pixel Conv + DepthToSpace + Slice.

ONNX Runtime's CPU ConvTranspose (kernel 2s, stride s) multiplies into a (Cout·k·k)×(H·W) column buffer and
scatters it back (col2im): for fcn32s it is ~5 % of the FLOPs but a large share of the time, and the INT8
quantiser leaves it in float (it produces the logits). With kernel 2s, stride s and padding s/2, every output
pixel sees exactly 2×2 input pixels, so the layer equals a 2×2 Conv to Cout·s·s phase channels (same MAC
count, a plain GEMM), a DepthToSpace that interleaves the phases, and a crop of s/2 on each side. The
rewrite is exact up to float rounding. This script rewrites a model, checks the outputs, optionally
quantises both versions the same way, and times them in interleaved rounds.

    .venv/bin/python benchmarks/upsampler_rewrite.py MODEL.onnx [--int8] [--rounds 9] [--size 320x480]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from fcn_deploy.data.transforms import parse_size


def subpixel_weights(weight: np.ndarray, stride: int) -> np.ndarray:
    """ConvTranspose weights (Cin, Cout, 2s, 2s) -> Conv weights (Cout·s·s, Cin, 2, 2) in DepthToSpace CRD order."""
    cin, cout, kernel, _ = weight.shape
    out = np.empty((cout, stride, stride, cin, 2, 2), np.float32)
    for tap_y, ky in ((0, stride), (1, 0)):  # tap 0 reads input row q-1 with kernel rows s.., tap 1 row q with 0..
        for tap_x, kx in ((0, stride), (1, 0)):
            block = weight[:, :, ky : ky + stride, kx : kx + stride]  # (Cin, Cout, s, s)
            out[..., tap_y, tap_x] = block.transpose(1, 2, 3, 0)
    return out.reshape(cout * stride * stride, cin, 2, 2)


def rewrite(model):
    """Replace every ConvTranspose(k=2s, stride s, pad s/2, group 1) of ``model`` in place; returns the count."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    count = 0
    for index, node in enumerate(list(graph.node)):
        if node.op_type != "ConvTranspose":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        weight = numpy_helper.to_array(inits[node.input[1]])
        stride, pads = attrs.get("strides", [1, 1]), attrs.get("pads", [0, 0, 0, 0])
        s = stride[0]
        if (attrs.get("group", 1) != 1 or weight.shape[2:] != (2 * s, 2 * s) or stride != [s, s]
                or pads != [s // 2] * 4 or s % 2):
            continue
        cout = weight.shape[1]
        bias = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 else np.zeros(cout, np.float32)
        name, pad = node.name or f"upsample{index}", s // 2
        graph.initializer.extend([
            numpy_helper.from_array(subpixel_weights(weight, s), f"{name}_phase_w"),
            numpy_helper.from_array(np.repeat(bias, s * s).astype(np.float32), f"{name}_phase_b"),
            numpy_helper.from_array(np.array([pad, pad], np.int64), f"{name}_crop_start"),
            numpy_helper.from_array(np.array([-pad, -pad], np.int64), f"{name}_crop_end"),
            numpy_helper.from_array(np.array([2, 3], np.int64), f"{name}_crop_axes"),
        ])
        replacement = [
            helper.make_node("Conv", [node.input[0], f"{name}_phase_w", f"{name}_phase_b"], [f"{name}_phases"],
                             kernel_shape=[2, 2], pads=[1, 1, 1, 1], name=f"{name}_phase_conv"),
            helper.make_node("DepthToSpace", [f"{name}_phases"], [f"{name}_interleaved"], blocksize=s, mode="CRD",
                             name=f"{name}_interleave"),
            helper.make_node("Slice", [f"{name}_interleaved", f"{name}_crop_start", f"{name}_crop_end",
                                       f"{name}_crop_axes"], list(node.output), name=f"{name}_crop"),
        ]
        graph.node.remove(node)
        for offset, new in enumerate(replacement):
            graph.node.insert(index + offset, new)
        count += 1
    used = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    return count


def quantize_like_cpu_target(src: Path, dst: Path, input_name: str, shape: tuple[int, ...]) -> None:
    """QDQ uint8/int8 per-channel (the CPU target's settings), MinMax on random inputs, logits producer excluded."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = 4

        def get_next(self):
            self.left -= 1
            if self.left < 0:
                return None
            return {input_name: np.random.default_rng(self.left).standard_normal(shape, dtype=np.float32)}

    model = onnx.load(str(src), load_external_data=False)
    output = model.graph.output[0].name
    excluded = [n.name for n in model.graph.node if output in n.output]
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=excluded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="an FP32 ONNX model with float32 NCHW input")
    parser.add_argument("--int8", action="store_true", help="also compare INT8 versions of both")
    parser.add_argument("--size", default="320x480")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    import onnx
    import onnxruntime as ort

    height, width = parse_size(args.size)
    work = Path(tempfile.mkdtemp(prefix="fcn-upsampler-"))
    model = onnx.load(args.model)
    replaced = rewrite(model)
    rewritten = work / "rewritten.onnx"
    onnx.save(model, str(rewritten))
    print(f"rewrote {replaced} ConvTranspose node(s)")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    paths = {"original fp32": Path(args.model), "rewritten fp32": rewritten}
    input_name = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"]).get_inputs()[0].name
    shape = (1, 3, height, width)
    if args.int8:
        for label, src in list(paths.items()):
            dst = work / f"{label.split()[0]}.int8.onnx"
            quantize_like_cpu_target(src, dst, input_name, shape)
            paths[label.replace("fp32", "int8")] = dst
    sessions = {k: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"]) for k, p in paths.items()}
    batch = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    outputs = {k: s.run(None, {input_name: batch})[0] for k, s in sessions.items()}
    reference = outputs["original fp32"]
    for label, out in outputs.items():
        print(f"{label:16s} max |diff| {np.abs(out - reference).max():.2e} "
              f"(max |logit| {np.abs(reference).max():.1f}), argmax agreement {(out.argmax(1) == reference.argmax(1)).mean():.4f}")
    labels = list(sessions)
    times: dict[str, list[float]] = {k: [] for k in labels}
    for round_index in range(args.rounds):
        shift = round_index % len(labels)
        for label in labels[shift:] + labels[:shift]:
            start = time.perf_counter()
            sessions[label].run(None, {input_name: batch})
            times[label].append(time.perf_counter() - start)
    base = np.asarray(times["original fp32"])
    for label in labels:
        speedup = float(np.median(base / np.asarray(times[label])))
        print(f"{label:16s} median {1e3 * np.median(times[label]):7.1f} ms, speed-up vs original fp32 {speedup:.2f}x")


if __name__ == "__main__":
    main()
