"""``fcn-deploy infer [MODEL] DIR --out OUT``: segment a folder of images into VOC palette masks."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, cast

import typer

from fcn_deploy.errors import InputError


def split_model_and_folder(paths: list[Path]) -> tuple[Optional[Path], Path]:
    """``[DIR]`` or ``[MODEL, DIR]`` -> (MODEL or None, DIR)."""
    if len(paths) == 1:
        return None, paths[0]
    if len(paths) == 2:
        return paths[0], paths[1]
    raise InputError(f"expected [MODEL] DIR, got {len(paths)} paths", "e.g. fcn-deploy infer export/fcn.onnx images/ --out masks/")


def infer(
    paths: list[Path] = typer.Argument(..., metavar="[MODEL] DIR",
                                       help="Optional model (.onnx, .engine, .pt; default: the best artifact present), then the image folder "
                                            "(or one image file, e.g. scene.tif)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder; masks mirror the input tree as <name>.png."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    backend: str = typer.Option("auto", "--backend", help="Runtime: auto (by the model's suffix), pytorch, onnxruntime, openvino or tensorrt."),
    precision: str = typer.Option("f32", "--precision", help="OpenVINO inference precision: f32, or bf16 on CPUs with native BF16."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also segment images in subfolders."),
    overlay: bool = typer.Option(False, "--overlay", help="Also write <name>.overlay.jpg colour overlays."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo images whose outputs already exist (default: skip them)."),
    batch: Optional[int] = typer.Option(None, "--batch", help="Tiles per model call (default: up to 4, capped at the model's maximum batch and at the pixels of its largest pass)."),
    tile: Optional[str] = typer.Option(None, "--tile", help="Force tiled inference with HEIGHTxWIDTH tiles (multiples of the "
                                       "model's alignment, 32 for the FCNs; default: fitted to each image, at most the "
                                       "model's largest size)."),
    overlap: Optional[float] = typer.Option(None, "--overlap", help="Tile overlap as a fraction of the tile, 0 to 0.9 "
                                            "(default: the context the model needs, three cells of its output grid: "
                                            "96 pixels for the FCNs)."),
    blend: str = typer.Option("hann", "--blend", help="How overlapping tiles are blended: hann, gaussian or mean."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", help="Refuse larger images (default: Pillow's 89.5 MP bomb limit)."),
    summary: Optional[Path] = typer.Option(None, "--summary", help="Summary JSON path (default: OUT/summary.json)."),
    level: int = typer.Option(0, "--level", help="Pyramid level of TIFF inputs (0: full resolution). TIFFs are read and "
                              "their labels written as tiled TIFFs window by window (pip install 'fcn-deploy[tiff]')."),
    overviews: bool = typer.Option(False, "--overviews", help="Label TIFFs (of TIFF inputs) get overview levels, each "
                                   "half the one above, so GIS and slide viewers open them at any zoom."),
    ray: Optional[str] = typer.Option(None, "--ray", metavar="ADDRESS",
                                      help="Run on Ray: 'local' (a private Ray on 127.0.0.1 for this job) or a running "
                                           "cluster's address (auto, HOST:PORT). OUT must be storage every node can write."),
    workers: Optional[int] = typer.Option(None, "--workers", help="With --ray: model workers (actors), each with one session (default 2)."),
    cpus_per_worker: Optional[float] = typer.Option(None, "--cpus-per-worker",
                                                    help="With --ray: CPUs each worker reserves, fractional allowed (default 0.5); "
                                                         "its threads are this rounded up."),
    gpus_per_worker: Optional[float] = typer.Option(None, "--gpus-per-worker", help="With --ray: GPUs each worker reserves (default 0)."),
    wait: bool = typer.Option(False, "--wait", help="If another run is writing into OUT, wait for it (default: refuse)."),
) -> None:
    """Segment every image in DIR (jpg, png, bmp, webp, tif) into VOC palette masks under OUT; resumable."""
    from fcn_deploy.data.transforms import parse_size
    from fcn_deploy.devices import check_device
    from fcn_deploy.imageio import DEFAULT_MAX_PIXELS
    from fcn_deploy.infer import InferConfig, infer_folder
    from fcn_deploy.runtime import BackendChoice
    from fcn_deploy.runtime.tensorrt_support import engine_build_notes
    from fcn_deploy.segmenter import Blend, SegmenterConfig

    model, folder = split_model_and_folder(paths)
    segmenter = SegmenterConfig(  # a tile forces slide mode; the config checks the blend's name
        tile=parse_size(tile, "--tile") if tile else None, overlap=overlap, batch=batch, blend=cast(Blend, blend),
    )
    config = InferConfig(
        segmenter=segmenter, device=check_device(device), backend=BackendChoice(backend, precision), recursive=recursive, overlay=overlay,
        overwrite=overwrite, max_pixels=max_pixels if max_pixels is not None else DEFAULT_MAX_PIXELS, summary=summary,
        wait=wait, level=level, overviews=overviews,
    )
    if ray is None:
        given = [name for name, value in (("--workers", workers), ("--cpus-per-worker", cpus_per_worker),
                                          ("--gpus-per-worker", gpus_per_worker)) if value is not None]
        if given:
            raise InputError(f"{', '.join(given)} only apply with --ray", "add --ray local (or a cluster address), or drop them")
        result = infer_folder(model, folder, out, config)
    else:
        from fcn_deploy.cluster import RayConfig, infer_on_ray

        defaults = RayConfig()
        cluster = RayConfig(
            address=ray, workers=workers if workers is not None else defaults.workers,
            cpus_per_worker=cpus_per_worker if cpus_per_worker is not None else defaults.cpus_per_worker,
            gpus_per_worker=gpus_per_worker if gpus_per_worker is not None else defaults.gpus_per_worker,
        )
        result = infer_on_ray(model, folder, out, config, cluster)
    typer.echo(
        f"segmented {result.count('ok')} images ({result.count('skipped')} skipped, already done) in "
        f"{result.seconds:.1f} s, {result.images_per_second:.2f} images/s on {result.backend}/{result.device}; "
        f"masks in {out}, summary {result.summary_path}"
    )
    for note in engine_build_notes(result.model):
        typer.echo(note)


def register(app: typer.Typer) -> None:
    """Add the ``infer`` command."""
    app.command("infer")(infer)
