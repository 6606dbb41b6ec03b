"""Helpers shared by the C API tests: compiling C programs against the library and running them."""

from __future__ import annotations

import os
import pwd
import shutil
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


#: printed by ``run_with_no_environment`` when the program made its default cache in the (private) home folder
HOME_CACHE_LINE = "fcn-test: the default cache was made in the home folder"
_PRIVATE_HOME = """
mount -t tmpfs -o mode=0700 fcn-test-home "$1" || exit 97
home=$1; shift
env -i "$@"
code=$?
[ -d "$home/.cache/fcn-deploy/openvino" ] && echo "{line}" >&2
exit $code
"""


def private_home_available() -> bool:
    """Whether programs can run in a private mount namespace (root with ``unshare``): their home an empty tmpfs."""
    return os.geteuid() == 0 and shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "--mount", "true"], capture_output=True, timeout=30).returncode == 0


def run_with_no_environment(*args: object, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a compiled C program with no environment variables at all (``env -i``), in a private mount namespace
    whose home folder (from the password database, where the program looks with no HOME) is an empty tmpfs: what the
    program writes there by default goes with the namespace. ``HOME_CACHE_LINE`` on stderr: its cache was made."""
    home = pwd.getpwuid(os.getuid()).pw_dir
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               _PRIVATE_HOME.format(line=HOME_CACHE_LINE), "sh", home, *[str(a) for a in args]]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
