"""Build the GStreamer element ``fcnsegment`` (libgstfcnsegment.so) into a deployment folder.

The element is C written against ``fcn_deploy.h`` only and links the folder's ``lib/libfcn_deploy.so`` (native or
embedded, whichever was built there) through ``$ORIGIN/..``, so the folder stays relocatable. It lands in
``lib/gstreamer-1.0/``: hosts find it with ``GST_PLUGIN_PATH=DIR/lib/gstreamer-1.0``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fcn_deploy import __version__
from fcn_deploy.errors import InputError, MissingComponentError
from fcn_deploy.fileio import atomic_path

SOURCE = Path(__file__).resolve().parent / "gstreamer" / "gstfcnsegment.c"
PLUGIN_NAME = "libgstfcnsegment.so"
PLUGIN_FOLDER = Path("lib") / "gstreamer-1.0"
GSTREAMER_PACKAGES: tuple[str, ...] = ("gstreamer-1.0", "gstreamer-base-1.0", "gstreamer-video-1.0")
GSTREAMER_FIX = ("install GStreamer's development files: apt-get install -y libgstreamer1.0-dev "
                 "libgstreamer-plugins-base1.0-dev gstreamer1.0-tools gstreamer1.0-plugins-base "
                 "gstreamer1.0-plugins-good (Debian/Ubuntu)")
CFLAGS: tuple[str, ...] = ("-std=gnu11", "-O2", "-fPIC", "-shared", "-Wall", "-Wextra", "-Wno-unused-parameter")


@dataclass(frozen=True)
class GstBuildResult:
    """Where the element was installed and the GST_PLUGIN_PATH a host sets to find it."""

    plugin: Path
    plugin_path: Path


def gstreamer_flags() -> tuple[list[str], list[str]]:
    """(compiler flags, linker flags) of GStreamer core, base and video, from pkg-config."""
    pkg_config = shutil.which("pkg-config")
    if pkg_config is None:
        raise MissingComponentError("'pkg-config' is not on PATH (the GStreamer element is built with it)",
                                    "apt-get install -y pkg-config; " + GSTREAMER_FIX)
    flags = []
    for what in ("--cflags", "--libs"):
        done = subprocess.run([pkg_config, what, *GSTREAMER_PACKAGES], capture_output=True, text=True)
        if done.returncode != 0:
            raise MissingComponentError(f"pkg-config finds no GStreamer development files: {done.stderr.strip()}",
                                        GSTREAMER_FIX)
        flags.append(done.stdout.split())
    return flags[0], flags[1]


def compile_command(prefix: Path, output: Path) -> list[str]:
    """The gcc command line that builds the element against the library and header in ``prefix``."""
    cflags, libs = gstreamer_flags()
    compiler = os.environ.get("CC", "gcc").split()
    if shutil.which(compiler[0]) is None:
        raise MissingComponentError(f"'{compiler[0]}' is not on PATH (the GStreamer element is C)",
                                    "install a C compiler (e.g. apt-get install gcc)")
    return [*compiler, *CFLAGS, f'-DVERSION="{__version__}"', *cflags, f"-I{prefix / 'include'}", "-o", str(output),
            str(SOURCE), f"-L{prefix / 'lib'}", "-Wl,-rpath,$ORIGIN/..", "-Wl,--no-undefined", "-lfcn_deploy", *libs]


def build_gstreamer_plugin(out_dir: str | os.PathLike[str], verbose: bool = False) -> GstBuildResult:
    """Compile the element against the deployment folder ``out_dir`` (which holds a built libfcn_deploy.so) and
    install it into ``out_dir/lib/gstreamer-1.0`` by a rename."""
    prefix = Path(out_dir).resolve()
    library = prefix / "lib" / "libfcn_deploy.so"
    if not library.is_file() or not (prefix / "include" / "fcn_deploy.h").is_file():
        raise InputError(f"{prefix} holds no built libfcn_deploy.so and fcn_deploy.h",
                         "build the library first: fcn-deploy capi build --out DIR (then --gstreamer links it)")
    target = prefix / PLUGIN_FOLDER / PLUGIN_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    print("capi: compiling the GStreamer element fcnsegment", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix=".gst-build-", dir=prefix) as workdir:
        built = Path(workdir) / PLUGIN_NAME
        command = compile_command(prefix, built)
        if verbose:
            print(" ".join(command), file=sys.stderr, flush=True)
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise InputError(f"compiling the GStreamer element failed (exit {done.returncode}):\n{done.stderr[-4000:]}",
                             "run again with --show-commands to see the compiler's command line")
        with atomic_path(target) as tmp:
            shutil.copyfile(built, tmp)
            tmp.chmod(0o755)
    return GstBuildResult(target, target.parent)
