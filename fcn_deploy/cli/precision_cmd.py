"""``fcn-deploy calibrate`` (INT8 Q/DQ ONNX on VOC crops) and ``fcn-deploy build`` (TensorRT engine, or an OpenVINO
IR with ``--target openvino``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, cast

import typer

from fcn_deploy.errors import InputError
from fcn_deploy.workspace import DEFAULT_ONNX

BUILD_TARGETS = ("tensorrt", "openvino")


def calibrate(
    onnx: Path = typer.Argument(DEFAULT_ONNX, help="FP32 ONNX to quantise."),
    data: Path = typer.Option(..., "--data", help="VOC2012 folder whose crops calibrate the ranges."),
    split: str = typer.Option("train", "--split", help="Split list to draw the crops from."),
    num: int = typer.Option(256, "--num", help="Number of crops."),
    crop: str = typer.Option("320x480", "--crop", help="Crop HEIGHTxWIDTH (multiples of 32)."),
    method: str = typer.Option("percentile", "--method", help="percentile (99.999), entropy (KL) or minmax."),
    target: str = typer.Option("tensorrt", "--target", help="tensorrt (int8 symmetric) or cpu (uint8 activations)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the crop choice (same seed, same crops)."),
    small: str = typer.Option("skip", "--small", help="Images smaller than the crop: skip or pad."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Default: <onnx>.int8.onnx / .int8-cpu.onnx."),
) -> None:
    """Calibrate an INT8 explicit-quantisation (Q/DQ) ONNX on VOC crops."""
    from fcn_deploy.data.transforms import parse_size
    from fcn_deploy.precision.calibrate import (
        CalibrationConfig,
        Method,
        SmallPolicy,
        Target,
        calibrate_int8,
    )

    config = CalibrationConfig(  # the config checks the names of the method, target and small-image policy
        data_dir=data, split=split, num=num, crop=parse_size(crop, "--crop"), method=cast(Method, method),
        target=cast(Target, target), seed=seed, small=cast(SmallPolicy, small), out=out,
    )
    result = calibrate_int8(onnx, config)
    typer.echo(f"{result.quantized_nodes} quantised tensors; the upsampling head and logits stay float: "
               f"{len(result.excluded_nodes)} nodes")
    if config.target == "tensorrt":
        typer.echo("Q/DQ lint: passes TensorRT's explicit-quantisation rules")
    typer.echo(f"wrote {result.path}; crop plan {result.plan_path}, ranges {result.ranges_path}")


def build(
    onnx: Path = typer.Argument(DEFAULT_ONNX, help="FP32 ONNX export."),
    fp32: bool = typer.Option(False, "--fp32", help="FP32 engine."),
    fp16: bool = typer.Option(False, "--fp16", help="FP16 engine (writes <onnx>.fp16.onnx first)."),
    int8: bool = typer.Option(False, "--int8", help="INT8 engine (calibrates <onnx>.int8.onnx when needed)."),
    calib_data: Optional[Path] = typer.Option(None, "--calib-data", help="VOC folder for INT8 calibration."),
    calib_num: Optional[int] = typer.Option(None, "--calib-num", help="Calibration crops (default 256; 64 with "
                                            "--target openvino)."),
    calib_crop: Optional[str] = typer.Option(None, "--calib-crop", help="Calibration crop HEIGHTxWIDTH (default "
                                             "320x480; with --target openvino the spec's crop size)."),
    calib_method: str = typer.Option("percentile", "--calib-method", help="percentile, entropy or minmax."),
    min_shape: Optional[str] = typer.Option(None, "--min", help="Profile minimum in the export's input layout: "
                                            "NxCxHxW for float32 NCHW exports, NxHxWxC for uint8 NHWC ones "
                                            "(default: the spec's)."),
    opt_shape: Optional[str] = typer.Option(None, "--opt", help="Profile optimum (NxCxHxW, or NxHxWxC for uint8 "
                                            "NHWC exports)."),
    max_shape: Optional[str] = typer.Option(None, "--max", help="Profile maximum (NxCxHxW, or NxHxWxC for uint8 "
                                            "NHWC exports)."),
    workspace: float = typer.Option(4.0, "--workspace", help="Builder workspace in GiB."),
    timing_cache: Optional[Path] = typer.Option(None, "--timing-cache", help="Timing cache (default: calibration/"
                                                "timing-<TensorRT version>-sm<compute capability>-<GPU>.cache)."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Checkpoint for the parity check "
                                             "(default: the export's source checkpoint)."),
    parity_data: Optional[Path] = typer.Option(None, "--parity-data", help="VOC folder for parity (default: "
                                               "--calib-data, else synthetic crops of the spec's crop size); its "
                                               "'val' split is used."),
    no_parity: Optional[str] = typer.Option(None, "--no-parity", metavar="REASON", help="Skip the parity gate on "
                                            "purpose; the reason is recorded in the engine's sidecar."),
    no_tf32: bool = typer.Option(False, "--no-tf32", help="Strict FP32 for the engine's FP32 layers (TensorRT "
                                 "allows TF32 on Ampere and newer by default)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Engine path (default engines/fcn.<precision>.engine; "
                                       "with --target openvino engines/fcn.<precision>.xml)."),
    target: str = typer.Option("tensorrt", "--target", help="tensorrt (an engine, on a GPU) or openvino (an IR for "
                               "the CPU)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="With --target openvino: f32, bf16, int8 "
                                            "(NNCF) or auto (INT8 where it passes, else BF16 where the CPU has it, "
                                            "else FP32)."),
    max_drop: float = typer.Option(1.0, "--max-drop", help="With --target openvino: INT8 budget, points of argmax "
                                   "agreement with FP32 and of mIoU lost at most on the held-out split."),
    calib_split: str = typer.Option("train", "--calib-split", help="Split of --calib-data the crops come from."),
    parity_split: str = typer.Option("val", "--parity-split", help="Split of the parity folder the gate runs on."),
    qdq: Optional[Path] = typer.Option(None, "--qdq", help="With --target openvino: an INT8 Q/DQ ONNX of the same "
                                       "model (fcn-deploy calibrate --target cpu); INT8 keeps the faster of "
                                       "OpenVINO on it and NNCF's IR within --max-drop."),
) -> None:
    """Make the precision ONNX, check its parity on CPU, then build a TensorRT engine (needs a GPU); or, with
    --target openvino, an OpenVINO IR (FP32, BF16 or NNCF INT8 within --max-drop) after the same kind of gate."""
    from fcn_deploy.build import BuildConfig, parse_dims
    from fcn_deploy.contract import read_onnx_spec
    from fcn_deploy.build import build as build_engine
    from fcn_deploy.data.transforms import parse_size
    from fcn_deploy.workspace import Precision

    if target not in BUILD_TARGETS:
        raise InputError(f"unknown --target {target!r}", f"use one of: {', '.join(BUILD_TARGETS)}")
    if target == "openvino":
        tensorrt_only = [name for name, used in (
            ("--fp32/--fp16/--int8", fp32 or fp16 or int8),
            ("--min/--opt/--max", any((min_shape, opt_shape, max_shape))),
            ("--timing-cache", timing_cache is not None), ("--no-tf32", no_tf32), ("--workspace", workspace != 4.0),
            ("--calib-method", calib_method != "percentile")) if used]
        if tensorrt_only:
            raise InputError(f"{', '.join(tensorrt_only)} belong to the TensorRT build, not --target openvino",
                             "choose the IR's precision with --precision f32|bf16|int8|auto")
        _build_openvino(onnx, precision or "auto", max_drop, calib_data, calib_split,
                        64 if calib_num is None else calib_num,
                        parse_size(calib_crop, "--calib-crop") if calib_crop else None, reference, parity_data,
                        parity_split, no_parity, out, qdq)
        return
    if precision is not None or max_drop != 1.0 or qdq is not None:
        raise InputError("--precision, --max-drop and --qdq belong to --target openvino",
                         "choose the engine's precision with --fp32, --fp16 or --int8")
    chosen = [name for name, flag in (("fp32", fp32), ("fp16", fp16), ("int8", int8)) if flag]
    if len(chosen) != 1:
        raise InputError("choose exactly one precision: --fp32, --fp16 or --int8"
                         + (f" (got {', '.join('--' + c for c in chosen)})" if chosen else ""))
    shapes = (min_shape, opt_shape, max_shape)
    if any(shapes) and not all(shapes):
        raise InputError("give all of --min, --opt and --max, or none (then the spec's shape range is used)")
    profile = None
    if min_shape and opt_shape and max_shape:
        spec = read_onnx_spec(onnx) if onnx.is_file() else None  # the layout the profile is given in
        profile = (parse_dims(min_shape, "--min", spec), parse_dims(opt_shape, "--opt", spec),
                   parse_dims(max_shape, "--max", spec))
    config = BuildConfig(
        precision=cast(Precision, chosen[0]), calib_data=calib_data, calib_num=256 if calib_num is None else calib_num,
        calib_method=calib_method, calib_crop=parse_size(calib_crop or "320x480", "--calib-crop"),
        calib_split=calib_split, parity_split=parity_split, profile=profile, workspace_gib=workspace,
        timing_cache=timing_cache, reference=reference, parity_data=parity_data, no_parity=no_parity, out=out,
        tf32=not no_tf32,
    )
    result = build_engine(onnx, config)
    if result.engine is None:
        typer.echo(f"precision ONNX {result.precision_onnx}")
        return
    from fcn_deploy.runtime.tensorrt_support import engine_build_notes

    for note in engine_build_notes(result.engine):  # the gate's record and the FP32 layers' math
        typer.echo(note)
    typer.echo(f"wrote {result.engine} and {result.engine.name}.json; precision ONNX {result.precision_onnx}")


def _build_openvino(onnx: Path, precision: str, max_drop: float, calib_data: Optional[Path], calib_split: str,
                    calib_num: int, calib_crop: Optional[tuple[int, int]], reference: Optional[Path],
                    parity_data: Optional[Path], parity_split: str, no_parity: Optional[str],
                    out: Optional[Path], qdq: Optional[Path]) -> None:
    """``build --target openvino``: the gated IR, and what was chosen and why."""
    from fcn_deploy.build_openvino import OpenVinoBuildConfig, build_openvino

    result = build_openvino(onnx, OpenVinoBuildConfig(
        precision=precision, max_drop=max_drop, calib_data=calib_data, calib_split=calib_split, calib_num=calib_num,
        calib_crop=calib_crop, reference=reference, parity_data=parity_data, parity_split=parity_split,
        no_parity=no_parity, out=out, qdq=qdq))
    for note in result.notes:
        typer.echo(note)
    typer.echo(f"wrote {result.ir} ({result.precision.upper()} OpenVINO IR) with its .bin and {result.ir.name}.json")
    gate = result.parity
    if gate.get("status") == "passed":
        typer.echo(f"gate: agreement {100 * gate['agreement']:.3f}%, ΔmIoU {100 * gate['delta_miou']:+.2f} pt on "
                   f"{gate['images']} held-out images")
    else:
        typer.echo(f"gate skipped on purpose: {gate.get('reason')}")
    if result.reverted_to_float:
        typer.echo(f"accuracy control kept {len(result.reverted_to_float)} layer(s) in float: "
                   + ", ".join(result.reverted_to_float))


def register(app: typer.Typer) -> None:
    """Add the ``calibrate`` and ``build`` commands."""
    app.command("calibrate")(calibrate)
    app.command("build")(build)
