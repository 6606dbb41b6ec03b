"""``fcn-deploy infer [MODEL] DIR --out OUT``: segment a folder of images into VOC palette masks; or
``fcn-deploy infer [MODEL] VIDEO --out OUT.mp4``: segment a video file into an overlay or mask video."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, cast

import typer

from fcn_deploy.errors import InputError

if TYPE_CHECKING:
    from fcn_deploy.runtime import BackendChoice
    from fcn_deploy.segmenter import SegmenterConfig


def split_model_and_folder(paths: list[Path]) -> tuple[Optional[Path], Path]:
    """``[DIR]`` or ``[MODEL, DIR]`` -> (MODEL or None, DIR)."""
    if len(paths) == 1:
        return None, paths[0]
    if len(paths) == 2:
        return paths[0], paths[1]
    raise InputError(f"expected [MODEL] DIR, got {len(paths)} paths", "e.g. fcn-deploy infer export/fcn.onnx images/ --out masks/")


def infer(
    paths: list[Path] = typer.Argument(..., metavar="[MODEL] DIR|IMAGE|VIDEO",
                                       help="Optional model (.onnx, .engine, .pt; default: the best artifact present), then the image "
                                            "folder, one image file (e.g. scene.tif) or a video file (.mp4, .mkv, .mov, .avi, .webm)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder; masks mirror the input tree as <name>.png. For a video: "
                             "the output video (.mp4, .mkv, .mov, .webm), with <name>.counts.jsonl beside it."),
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
    video_mode: Optional[str] = typer.Option(None, "--video-mode", help="For a video input: overlay (the palette blended over "
                                             "each frame, the default) or mask (the palette colours alone, lossless)."),
) -> None:
    """Segment every image in DIR (jpg, png, bmp, webp, tif) into VOC palette masks under OUT; resumable.

    A video file is segmented frame by frame into an overlay or mask video OUT at its frame rate and size, with
    each frame's class pixel counts as JSON lines beside it; resumable (pip install 'fcn-deploy[video]').
    """
    from fcn_deploy.data.transforms import parse_size
    from fcn_deploy.devices import check_device
    from fcn_deploy.imageio import DEFAULT_MAX_PIXELS
    from fcn_deploy.infer import InferConfig, infer_folder
    from fcn_deploy.runtime import BackendChoice
    from fcn_deploy.runtime.tensorrt_support import engine_build_notes
    from fcn_deploy.segmenter import Blend, SegmenterConfig
    from fcn_deploy.video import is_video_path

    model, folder = split_model_and_folder(paths)
    segmenter = SegmenterConfig(  # a tile forces slide mode; the config checks the blend's name
        tile=parse_size(tile, "--tile") if tile else None, overlap=overlap, batch=batch, blend=cast(Blend, blend),
    )
    if is_video_path(folder) and not folder.is_dir():
        folder_only = (("--recursive", recursive), ("--overlay", overlay), ("--summary", summary is not None),
                       ("--level", level != 0), ("--max-pixels", max_pixels is not None), ("--ray", ray is not None),
                       ("--workers", workers is not None), ("--cpus-per-worker", cpus_per_worker is not None),
                       ("--gpus-per-worker", gpus_per_worker is not None))
        _infer_video(model, folder, out, segmenter, device, BackendChoice(backend, precision), video_mode or "overlay",
                     overwrite, wait, [name for name, given in folder_only if given])
        return
    if video_mode is not None:
        raise InputError(f"--video-mode applies to a video input; {folder} is not a video file",
                         "drop --video-mode, or pass a video (.mp4, .mkv, .mov, .avi, .webm)")
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
        _note_videos(folder, recursive)
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
    for note in engine_build_notes(result.model):
        typer.echo(note)
    typer.echo(
        f"segmented {result.count('ok')} images ({result.count('skipped')} skipped, already done) in "
        f"{result.seconds:.1f} s, {result.images_per_second:.2f} images/s on {result.backend}/{result.device}; "
        f"masks in {out}, summary {result.summary_path}"
    )


def _infer_video(model: Optional[Path], video: Path, out: Path, segmenter: SegmenterConfig, device: str,
                 backend: BackendChoice, mode: str, overwrite: bool, wait: bool, folder_only: list[str]) -> None:
    """The video branch of ``infer``: options that apply to folders only are refused, not ignored."""
    from fcn_deploy.devices import check_device
    from fcn_deploy.video import VideoConfig, VideoMode, infer_video

    if folder_only:
        raise InputError(f"{', '.join(folder_only)} apply to a folder of images, not to a video input",
                         "drop them (--video-mode overlay|mask chooses what the output video shows)")
    config = VideoConfig(segmenter=segmenter, device=check_device(device), backend=backend,
                         mode=cast(VideoMode, mode), overwrite=overwrite, wait=wait)
    result = infer_video(model, video, out, config)
    if result.skipped:
        typer.echo(f"{out} and {result.counts} exist: nothing to do (pass --overwrite to segment {video} again)")
        return
    typer.echo(
        f"segmented {result.segmented} frames of {video} ({result.resumed} done by an earlier run) in "
        f"{result.seconds:.1f} s, {result.frames_per_second:.2f} frames/s on {result.backend}/{result.device}; "
        f"{result.mode} video {out} ({result.width}x{result.height}, {result.frames} frames at {result.rate} fps), "
        f"class counts {result.counts}"
    )


def _note_videos(folder: Path, recursive: bool) -> None:
    """A folder run segments images only: say so when the folder holds videos, rather than pass them by unsaid."""
    from fcn_deploy.progress import log
    from fcn_deploy.video import videos_in

    if not folder.is_dir():
        return
    videos = videos_in(folder, recursive)
    if videos:
        files = "1 video file" if len(videos) == 1 else f"{len(videos)} video files"
        log(f"note: a folder run segments images only; {files} in {folder} (e.g. {videos[0]}) left out: run "
            "'fcn-deploy infer VIDEO --out OUT.mp4' for each")


def register(app: typer.Typer) -> None:
    """Add the ``infer`` command."""
    app.command("infer")(infer)
