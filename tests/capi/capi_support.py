"""Helpers shared by the C API tests: compiling C programs against the library and running them."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_SOURCE = REPO_ROOT / "examples" / "c" / "segment.c"
TEST_SOURCE = Path(__file__).resolve().parent / "capi_test.c"
FUZZ_SOURCE = Path(__file__).resolve().parent / "capi_fuzz.c"
#: compiler arguments of C programs run against the sanitizer build of the native library (asan_dlopen.c: see there)
SANITIZER_FLAGS = ("-fsanitize=address,undefined", "-fno-omit-frame-pointer",
                   str(Path(__file__).resolve().parent / "asan_dlopen.c"), "-ldl")
CFLAGS = ["-O1", "-g", "-Wall", "-Wextra", "-Werror", "-std=c99", "-D_POSIX_C_SOURCE=200809L"]


@dataclass(frozen=True)
class CapiBuild:
    """The installed library folder and the C programs compiled against it."""

    prefix: Path
    example: Path
    test_program: Path


def compile_c(source: Path, output: Path, prefix: Path, *extra: str, rpath: str | None = None) -> Path:
    """Compile one C program against the library in ``prefix`` (rpath, so it runs with an empty environment).

    ``rpath`` replaces the absolute path to ``prefix/lib`` (e.g. '$ORIGIN/../lib' for a host inside the folder).
    """
    command = ["gcc", *CFLAGS, *extra, f"-I{prefix / 'include'}", "-o", str(output), str(source),
               f"-L{prefix / 'lib'}", f"-Wl,-rpath,{rpath or prefix / 'lib'}", f"-Wl,-rpath-link,{prefix / 'lib'}",
               "-lfcn_deploy", "-pthread"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"gcc failed:\n{' '.join(command)}\n{done.stderr}")
    return output


def read_rgb(path: Path) -> np.ndarray:
    """An image file as H×W×3 uint8 RGB."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


#: the environment programs run in: empty but for the native library's compiled-model cache turned off, so that
#: tests write nothing outside their temporary folders (the cache tests set it themselves)
NO_CACHE = {"FCN_DEPLOY_CACHE_DIR": ""}


def run_program(*args: object, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a compiled C program in an empty environment plus ``env`` (the cache off unless ``env`` sets it),
    capturing text output."""
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, env={**NO_CACHE, **(env or {})},
                          timeout=timeout)
