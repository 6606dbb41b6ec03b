"""``fcn-deploy capi build``: build the C library, its header and its pkg-config file."""

from __future__ import annotations

from pathlib import Path

import typer

RUNTIMES: tuple[str, ...] = ("native", "embedded")


def build(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to install into (lib/, include/, lib/pkgconfig/)."),
    runtime: str = typer.Option(
        "native", "--runtime",
        help="native: C++ over OpenVINO, no Python in the host, a relocatable folder; serves fcn-deploy ONNX files "
             "(FP32, INT8 Q/DQ) and OpenVINO IR on the CPU. embedded: embeds this environment's Python and serves "
             "everything (TensorRT engines, checkpoints, CUDA included)."),
    debug: bool = typer.Option(False, "--debug", help="Compile without optimisation, with debug information."),
    show_commands: bool = typer.Option(False, "--show-commands", help="Print the compiler's command lines."),
    gstreamer: bool = typer.Option(
        False, "--gstreamer",
        help="Also build the GStreamer element fcnsegment into OUT/lib/gstreamer-1.0 (GST_PLUGIN_PATH)."),
) -> None:
    """Build libfcn_deploy.so: native (OpenVINO, no Python) or embedded (this environment's Python runtime)."""
    from fcn_deploy.errors import InputError

    if runtime not in RUNTIMES:
        raise InputError(f"unknown --runtime {runtime!r}", f"use one of: {', '.join(RUNTIMES)}")
    if gstreamer:  # before the library's build (minutes): its prerequisites fail at once
        from fcn_deploy.capi.gstreamer_build import gstreamer_flags

        gstreamer_flags()
    if runtime == "native":
        from fcn_deploy.capi.native_build import NativeBuildConfig, build_native_library

        result = build_native_library(out, NativeBuildConfig(optimize=not debug, verbose=show_commands))
    else:
        from fcn_deploy.capi.build import CapiBuildConfig, build_library

        result = build_library(out, CapiBuildConfig(optimize=not debug, verbose=show_commands))
    typer.echo(f"library:    {result.library}")
    typer.echo(f"header:     {result.header}")
    typer.echo(f"pkg-config: {result.pkgconfig}")
    if runtime == "native":
        typer.echo(f"cmake:      {result.cmake_package} (find_package(fcn_deploy) with CMAKE_PREFIX_PATH={result.prefix})")
    typer.echo(f"build with: PKG_CONFIG_PATH={result.pkgconfig.parent} pkg-config --cflags --libs fcn_deploy")
    if gstreamer:
        _build_gstreamer(out, show_commands)


def _build_gstreamer(out: Path, show_commands: bool) -> None:
    """--gstreamer: build the fcnsegment element against the library just built in ``out``."""
    from fcn_deploy.capi.gstreamer_build import build_gstreamer_plugin

    element = build_gstreamer_plugin(out, verbose=show_commands)
    typer.echo(f"gstreamer:  {element.plugin} (GST_PLUGIN_PATH={element.plugin_path})")


def register(app: typer.Typer) -> None:
    """Add the ``capi`` command group."""
    capi = typer.Typer(help="Build the C API (libfcn_deploy.so, fcn_deploy.h, fcn_deploy.pc).", no_args_is_help=True)
    capi.command("build")(build)
    app.add_typer(capi, name="capi")
