"""``fcn-deploy bench``: latency, throughput, memory and efficiency of artifacts against PyTorch eager."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Optional

import typer

from fcn_deploy.errors import InputError


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """'320x480,512x512' -> ((320, 480), (512, 512)); a malformed entry raises InputError naming it."""
    from fcn_deploy.data.transforms import parse_size

    sizes = tuple(parse_size(part, "--sizes") for part in text.split(",") if part.strip())
    if not sizes:
        raise InputError("--sizes is empty", "write sizes as HEIGHTxWIDTH, e.g. 320x480,512x512")
    return sizes


def parse_batches(text: str) -> tuple[int, ...]:
    """'1,4' -> (1, 4); anything but positive integers raises InputError."""
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items or any(not item.isdigit() or int(item) < 1 for item in items):
        raise InputError(f"bad --batch {text!r}", "give positive batch sizes separated by commas, e.g. 1,4")
    return tuple(int(item) for item in items)


def bench(
    models: Optional[list[Path]] = typer.Argument(
        None, help="Checkpoints (.pt), ONNX files, OpenVINO IRs (.xml), engines. Default: newest checkpoint + "
        "export/*.onnx (with --peers also engines/*.xml)."
    ),
    sizes: str = typer.Option("320x480", "--sizes", help="Input sizes HEIGHTxWIDTH, comma-separated."),
    batch: str = typer.Option("1", "--batch", help="Batch sizes, comma-separated."),
    warmup: int = typer.Option(2, "--warmup", help="Untimed runs per artifact and shape."),
    iters: int = typer.Option(20, "--iters", help="Timed runs per artifact and shape."),
    rounds: int = typer.Option(5, "--rounds", help="Interleaved rounds the timed runs are spread over."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    backend: str = typer.Option("onnxruntime", "--backend", help="Runtime of the ONNX files: onnxruntime or openvino "
                                "(checkpoints and engines keep their own)."),
    precision: str = typer.Option("f32", "--precision", help="OpenVINO inference precision of the ONNX files: f32, or "
                                  "bf16 on CPUs with native BF16."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full report as JSON here."),
    rss: bool = typer.Option(True, "--rss/--no-rss", help="Measure peak RSS of each artifact in a fresh process."),
    gemm_size: int = typer.Option(2048, "--gemm-size", help="n of the n×n float32 GEMM reference."),
    peers: bool = typer.Option(False, "--peers", help="Compare with the peers (PyTorch eager NCHW/channels-last, "
                               "torch.compile, ONNX Runtime and OpenVINO FP32/BF16/INT8) at the first size and batch."),
    peer_images: Optional[Path] = typer.Option(None, "--peer-images", help="With --peers: a folder of images "
                                               "for the argmax agreement (default: the random timing input)."),
) -> None:
    """Median/p90/p99 latency, images/s, MP/s, GFLOP/s vs GEMM, peak RSS and speed-up over PyTorch eager."""
    if peers:
        from fcn_deploy.bench.peers import workspace_models

        chosen = models or workspace_models()
        _check_json_out(json_out, chosen, peer_images)  # before any measurement
        _check_peer_options(device, backend, precision)
        _run_peers(chosen, bool(models), parse_sizes(sizes)[0], parse_batches(batch)[0], warmup, iters, rounds,
                   rss, gemm_size, peer_images, json_out)
        return
    from fcn_deploy.bench import (
        TABLE_COLUMNS,
        BenchConfig,
        run_bench,
        summary_lines,
        table_rows,
    )
    from fcn_deploy.workspace import default_bench_models

    chosen = models or default_bench_models()
    _check_json_out(json_out, chosen, None)
    config = BenchConfig(
        sizes=parse_sizes(sizes), batches=parse_batches(batch), warmup=warmup, iters=iters, rounds=rounds,
        device=device, measure_rss=rss, gemm_size=gemm_size, onnx_backend=backend, precision=precision,
    )
    report = run_bench(chosen, config)
    _print_table(TABLE_COLUMNS, table_rows(report), summary_lines(report), width=160)
    _write_json(report, json_out)


def _check_json_out(json_out: Optional[Path], models: list[Path], images: Optional[Path]) -> None:
    """--json is a writable file that is none of the models measured, their sidecars or the peer images."""
    from fcn_deploy.contract import with_sidecar
    from fcn_deploy.fileio import Place, check_output_file, check_outputs_apart

    if json_out is None:
        return
    inputs = [place for model in models for place in with_sidecar("the model", model)]
    if images is not None:
        inputs.append(Place("--peer-images", images, whole=True))
    check_outputs_apart([Place("--json", json_out)], inputs)
    check_output_file(json_out, "--json")


def _check_peer_options(device: str, backend: str, precision: str) -> None:
    """--peers runs every runtime and precision itself, on the CPU: the options that pick one are refused."""
    from fcn_deploy.errors import InputError

    given = [f"{name} {value}" for name, value, default in (("--device", device, ("auto", "cpu")),
                                                              ("--backend", backend, ("onnxruntime",)),
                                                              ("--precision", precision, ("f32",)))
             if value not in default]
    if given:
        raise InputError(f"--peers runs every runtime and precision on the CPU; {', '.join(given)} does not apply",
                         "drop those options, or drop --peers to bench one runtime")


def _run_peers(models: list[Path], given: bool, size: tuple[int, int], batch: int, warmup: int, iters: int, rounds: int,
               rss: bool, gemm_size: int, images: Optional[Path], json_out: Optional[Path]) -> None:
    """``bench --peers``: the peer table and the machine's limit; ``given``: the models came from the command line."""
    import tempfile

    from fcn_deploy.bench.peers import (
        PEER_COLUMNS,
        PeerConfig,
        peer_irs,
        peer_models,
        peer_rows,
        peer_summary_lines,
        run_peers,
    )

    with tempfile.TemporaryDirectory(prefix="fcn-peers-") as scratch:
        checkpoint, onnx, int8, note = peer_models(models, Path(scratch), given=given)
        bf16_ir, int8_ir, ir_note = peer_irs(models, onnx, given=given)
        config = PeerConfig(checkpoint=checkpoint, onnx=onnx, int8_onnx=int8, bf16_ir=bf16_ir, int8_ir=int8_ir,
                            size=size, batch=batch,
                            warmup=warmup, iters=iters, rounds=rounds, measure_rss=rss, matmul_size=gemm_size,
                            images=images, note="; ".join(n for n in (note, ir_note) if n))
        report = run_peers(config)
    _print_table(PEER_COLUMNS, peer_rows(report), peer_summary_lines(report), width=180)
    _write_json(report, json_out)


def _print_table(columns: Sequence[str], rows: Iterable[Sequence[str]], lines: Iterable[str], width: int) -> None:
    """A results table on stdout (at least ``width`` columns wide), then the lines that explain it."""
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, show_lines=False)
    for row in rows:
        table.add_row(*row)
    console = Console(highlight=False, width=max(width, Console().width))
    console.print(table)
    for line in lines:
        console.print(line, markup=False, soft_wrap=True)


def _write_json(report: Any, json_out: Optional[Path]) -> None:
    """Write the report's JSON where ``--json`` asked (nothing without it)."""
    if json_out is not None:
        report.write_json(json_out)
        typer.echo(f"wrote {json_out}")
    else:
        typer.echo("results: the table above only (--json FILE keeps them)")


def register(app: typer.Typer) -> None:
    """Add the ``bench`` command."""
    app.command("bench")(bench)
