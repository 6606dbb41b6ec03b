"""``fcn-deploy triton export``, ``serve`` and ``client``: Triton Inference Server model repositories and serving."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, cast

import typer


def serve(
    model: Optional[Path] = typer.Argument(None, help="Model (.onnx, .engine, .xml, .pt; default: the best artifact present)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (default: this machine only)."),
    http_port: int = typer.Option(8000, "--http-port", help="KServe v2 HTTP port."),
    grpc_port: int = typer.Option(8001, "--grpc-port", help="KServe v2 gRPC port."),
    metrics_port: int = typer.Option(8002, "--metrics-port", help="Prometheus metrics port."),
    instances: int = typer.Option(1, "--instances", help="Model instances (each its own segmenter)."),
    max_batch: int = typer.Option(8, "--max-batch", help="Most requests Triton batches into one call."),
    max_queue_delay_us: int = typer.Option(2000, "--max-queue-delay-us", help="How long Triton waits to fill a batch."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", help="Refuse larger images (default: Pillow's 89.5 MP bomb limit)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    backend: str = typer.Option("auto", "--backend", help="Runtime: auto (by the model's suffix), pytorch, onnxruntime, openvino or tensorrt."),
    precision: str = typer.Option("f32", "--precision", help="OpenVINO inference precision: f32, or bf16 on CPUs with native BF16."),
    tile: Optional[str] = typer.Option(None, "--tile", help="Force tiled inference with HEIGHTxWIDTH tiles (multiples of 32)."),
    workspace: Optional[Path] = typer.Option(None, "--workspace", help="Folder for Triton's model store and sockets (default: a temporary one)."),
) -> None:
    """Serve the segmenter on Triton (PyTriton) as 'fcn_segment': encoded images in, mask PNG and labels out."""
    from fcn_deploy.data.transforms import parse_size
    from fcn_deploy.devices import check_device
    from fcn_deploy.imageio import DEFAULT_MAX_PIXELS
    from fcn_deploy.runtime import BackendChoice
    from fcn_deploy.runtime.tensorrt_support import tensorrt_unavailable
    from fcn_deploy.segmenter import SegmenterConfig
    from fcn_deploy.serving.server import ServeConfig
    from fcn_deploy.serving.server import serve as run_server
    from fcn_deploy.workspace import default_model

    config = ServeConfig(
        host=host, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port, instances=instances,
        max_batch=max_batch, max_queue_delay_us=max_queue_delay_us,
        max_pixels=max_pixels if max_pixels is not None else DEFAULT_MAX_PIXELS, device=check_device(device),
        backend=BackendChoice(backend, precision),
        segmenter=SegmenterConfig(tile=parse_size(tile, "--tile") if tile else None), workspace=workspace,
    )
    chosen = model if model is not None else default_model(config.device, engine_unavailable=tensorrt_unavailable,
                                                          backend=config.backend.backend)
    if workspace is not None:
        _check_workspace(workspace, chosen)
    run_server(chosen, config)


def _check_workspace(workspace: Path, model: Path) -> None:
    """PyTriton makes --workspace and deletes it as a whole when the server stops: a new folder holding no input."""
    from fcn_deploy.contract import with_sidecar
    from fcn_deploy.errors import InputError
    from fcn_deploy.fileio import Place, check_output_dir, check_outputs_apart

    check_outputs_apart([Place("--workspace", workspace, whole=True)], with_sidecar("the model", model))
    check_output_dir(workspace, "--workspace")
    if workspace.exists():
        raise InputError(f"--workspace {workspace} already exists; the server makes it and deletes it as a whole "
                         "when it stops", "name a folder that does not exist yet, or leave --workspace out")


def client(
    url: str = typer.Argument(..., help="Server: http://HOST:PORT, grpc://HOST:PORT or HOST:PORT (HTTP)."),
    paths: list[Path] = typer.Argument(..., metavar="IMAGES_OR_DIR", help="A folder of images, or image files."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder; masks mirror the input tree as <name>.png."),
    model_name: str = typer.Option("fcn_segment", "--model-name", help="The segmenter model on the server."),
    concurrency: int = typer.Option(4, "--concurrency", help="Requests in flight at once."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also segment images in subfolders."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo images whose masks already exist (default: skip them)."),
    summary: Optional[Path] = typer.Option(None, "--summary", help="Summary JSON path (default: OUT/summary.json)."),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds one request may take."),
) -> None:
    """Segment images on a Triton server; writes the same masks and summary as 'fcn-deploy infer'."""
    from fcn_deploy.serving.client import ClientConfig, segment_remote

    config = ClientConfig(model_name=model_name, concurrency=concurrency, timeout_s=timeout, recursive=recursive,
                          overwrite=overwrite, summary=summary)
    result = segment_remote(url, list(paths), out, config)
    typer.echo(
        f"segmented {result.count('ok')} images ({result.count('skipped')} skipped, already done) in "
        f"{result.seconds:.1f} s, {result.images_per_second:.2f} images/s on {result.model}; "
        f"masks in {out}, summary {result.summary_path}"
    )


def triton_export(
    model: Optional[Path] = typer.Argument(None, help="ONNX file, TensorRT engine or OpenVINO IR (.xml) (default: the best artifact present)."),
    out: Path = typer.Option(..., "--out", "-o", help="The model repository folder."),
    name: str = typer.Option("fcn", "--name", help="Model name; the segmenter model is <name>_segment."),
    max_batch: Optional[int] = typer.Option(None, "--max-batch", help="max_batch_size (default: the model's maximum batch)."),
    instances: int = typer.Option(1, "--instances", help="Instances of each model."),
    max_queue_delay_us: int = typer.Option(2000, "--max-queue-delay-us", help="Dynamic batching queue delay."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or gpu instances (default: gpu for engines, cpu for ONNX and IRs)."),
    segment_network: str = typer.Option("triton", "--segment-network",
                                        help="How <name>_segment runs the network: 'triton' (calls <name>) or 'in_process'."),
    backend: str = typer.Option("auto", "--backend", help="Runtime of an in-process network: auto (by the model's suffix), "
                                                          "onnxruntime, openvino or tensorrt."),
    precision: str = typer.Option("f32", "--precision", help="OpenVINO inference precision: f32, or bf16 (the serving CPU "
                                                             "must compute BF16 natively)."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", help="The segmenter model refuses larger images."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace models of the same name in the repository."),
    triton_version: Optional[str] = typer.Option(None, "--triton-version", help="Full NGC tag of the Triton container "
                                                 "that will serve a plan (e.g. 24.05-py3 or 25.12-trtllm-python-py3): "
                                                 "the plan's TensorRT version must be the one it runs."),
    triton_tensorrt: Optional[str] = typer.Option(None, "--triton-tensorrt", help="The TensorRT version that "
                                                  "container runs, as read in it (e.g. 10.8.0.43), for a tag "
                                                  "fcn-deploy's table does not hold."),
) -> None:
    """Write a Triton model repository: the network (ONNX Runtime, TensorRT or OpenVINO) and the segmenter (Python backend)."""
    from fcn_deploy.runtime import BackendChoice
    from fcn_deploy.runtime.tensorrt_support import tensorrt_unavailable
    from fcn_deploy.serving.repository import (
        NetworkRuntime,
        RepositoryConfig,
        TritonDevice,
        export_repository,
    )
    from fcn_deploy.workspace import default_model

    config = RepositoryConfig(name=name, max_batch=max_batch, instances=instances,
                              max_queue_delay_us=max_queue_delay_us, device=cast(Optional[TritonDevice], device),
                              network_runtime=cast(NetworkRuntime, segment_network),  # as written; the config refuses others
                              backend=BackendChoice(backend, precision), max_pixels=max_pixels, overwrite=overwrite,
                              triton_version=triton_version, triton_tensorrt=triton_tensorrt)
    chosen = model if model is not None else default_model(engine_unavailable=tensorrt_unavailable,
                                                          backend=config.backend.backend)
    result = export_repository(chosen, out, config)
    typer.echo(f"wrote {result.network} ({result.platform}) and {result.segment} (python); "
               f"serve with: tritonserver --model-repository {result.repository}")


def register(app: typer.Typer) -> None:
    """Add the ``triton`` group (``triton export``) and the ``serve`` and ``client`` commands."""
    triton_app = typer.Typer(help="Triton Inference Server model repositories.", no_args_is_help=True)
    triton_app.command("export")(triton_export)
    app.add_typer(triton_app, name="triton")
    app.command("serve")(serve)
    app.command("client")(client)
