"""``fcn-deploy capi build``: build the C library, its header and its pkg-config file."""

from __future__ import annotations

from pathlib import Path

import typer


def build(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to install into (lib/, include/, lib/pkgconfig/)."),
    debug: bool = typer.Option(False, "--debug", help="Compile the C side with -O0 -g instead of -O2."),
    show_commands: bool = typer.Option(False, "--show-commands", help="Print the compiler's command lines."),
) -> None:
    """Build libfcn_deploy.so, embedding this environment's Python runtime."""
    from fcn_deploy.capi.build import CapiBuildConfig, build_library


    result = build_library(out, CapiBuildConfig(optimize=not debug, verbose=show_commands))
    typer.echo(f"library:    {result.library}")
    typer.echo(f"header:     {result.header}")
    typer.echo(f"pkg-config: {result.pkgconfig}")
    typer.echo(f"build with: PKG_CONFIG_PATH={result.pkgconfig.parent} pkg-config --cflags --libs fcn_deploy")


def register(app: typer.Typer) -> None:
    """Add the ``capi`` command group."""
    capi = typer.Typer(help="Build the C API (libfcn_deploy.so, fcn_deploy.h, fcn_deploy.pc).", no_args_is_help=True)
    capi.command("build")(build)
    app.add_typer(capi, name="capi")
