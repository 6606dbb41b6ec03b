"""Build the native libfcn_deploy.so (C++ over OpenVINO, no Python inside) into a relocatable folder.

CMake builds ``capi/native`` against the OpenVINO CMake package of the installed ``openvino`` wheel; the folder
then receives the library, only the OpenVINO libraries it needs (core, CPU plugin, the ONNX and IR frontends,
TBB; all found through ``$ORIGIN`` RPATHs), the header, a pkg-config file and a CMake package whose paths are
relative to the folder, and the C example. Copy the folder anywhere: hosts need no environment variables.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fcn_deploy import __version__
from fcn_deploy.capi.build import install_prefix
from fcn_deploy.errors import InputError, MissingComponentError
from fcn_deploy.fileio import atomic_path, write_text_atomic

PACKAGE_DIR = Path(__file__).resolve().parent
NATIVE_SOURCE = PACKAGE_DIR / "native"
TEMPLATES = NATIVE_SOURCE / "package"
EXAMPLE_DIR = PACKAGE_DIR.parent.parent / "examples" / "c"
HEADER_NAME = "fcn_deploy.h"
LIBRARY_NAME = "libfcn_deploy.so"
#: the OpenVINO libraries the native library loads (globs in the wheel's libs/): core, CPU plugin, the ONNX and IR
#: frontends, TBB; nothing else of the wheel (GPU/NPU plugins, other frontends) is copied
OPENVINO_LIBRARIES: tuple[str, ...] = ("libopenvino.so.*", "libopenvino_intel_cpu_plugin.so",
                                       "libopenvino_onnx_frontend.so.*", "libopenvino_ir_frontend.so.*",
                                       "libtbb.so.*")
NLOHMANN_FIX = "install nlohmann/json: apt-get install -y nlohmann-json3-dev (Debian/Ubuntu; header-only)"
EXAMPLE_FILES: tuple[str, ...] = ("segment.c", "Makefile", "CMakeLists.txt")


@dataclass(frozen=True)
class NativeBuildConfig:
    """Options of the native build."""

    optimize: bool = True  # CMake Release (else Debug: -O0 -g)
    verbose: bool = False  # show CMake's and the compiler's command lines
    sanitize: bool = False  # AddressSanitizer + UndefinedBehaviorSanitizer (for tests of the library itself)


@dataclass(frozen=True)
class NativeBuildResult:
    """Where the build put the deployment folder's parts."""

    prefix: Path
    library: Path
    header: Path
    pkgconfig: Path
    cmake_package: Path
    openvino_libraries: tuple[Path, ...]
    seconds: float


def _progress(message: str) -> None:
    print(f"capi: {message}", file=sys.stderr, flush=True)


def openvino_dir() -> Path:
    """The installed openvino package folder (with include/, cmake/ and libs/), found without importing it."""
    spec = importlib.util.find_spec("openvino")
    if spec is None or not spec.submodule_search_locations:
        raise MissingComponentError("the openvino package is not installed (the native library builds against it)",
                                    "pip install 'fcn-deploy[openvino]'")
    folder = Path(list(spec.submodule_search_locations)[0])
    for part in ("include", "libs"):
        if not (folder / part).is_dir():
            raise MissingComponentError(f"the openvino package at {folder} has no {part}/ folder",
                                        "reinstall the openvino wheel: pip install --force-reinstall openvino")
    return folder


def openvino_cmake_dir(folder: Path) -> Path:
    """The folder holding OpenVINOConfig.cmake inside the wheel (cmake/ or lib/cmake/...)."""
    for candidate in [folder / "cmake", *sorted(folder.glob("lib*/cmake/*"))]:
        if (candidate / "OpenVINOConfig.cmake").is_file():
            return candidate
    raise MissingComponentError(f"the openvino package at {folder} ships no CMake package (OpenVINOConfig.cmake)",
                                "install an openvino wheel that ships its development files (2024.0 or newer)")


def openvino_libraries(folder: Path) -> list[Path]:
    """The wheel's library files the native library needs."""
    found = []
    for pattern in OPENVINO_LIBRARIES:
        matches = sorted(p for p in (folder / "libs").glob(pattern) if p.is_file() and not p.is_symlink())
        if not matches:
            raise MissingComponentError(f"the openvino package has no {pattern} in {folder / 'libs'}",
                                        "reinstall the openvino wheel: pip install --force-reinstall openvino")
        found.extend(matches)
    return found


def _tool(name: str, fix: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MissingComponentError(f"'{name}' is not on PATH (the native library is built with CMake and a C++17 "
                                    "compiler)", fix)
    return path


def _run(command: list[str], what: str, verbose: bool) -> None:
    """Run one build command; MissingComponentError naming nlohmann/json when CMake cannot find it."""
    done = subprocess.run(command, capture_output=not verbose, text=True)
    if done.returncode == 0:
        return
    output = (done.stdout or "") + (done.stderr or "")
    if "nlohmann_json" in output and "find_package" in output:
        raise MissingComponentError("CMake cannot find nlohmann/json (the native library parses the spec with it)",
                                    NLOHMANN_FIX)
    raise InputError(f"{what} failed (exit {done.returncode}):\n{output[-4000:]}",
                     "run again with --show-commands to see the full build log")


def compile_native(build_dir: Path, config: NativeBuildConfig = NativeBuildConfig()) -> Path:
    """Configure and build ``capi/native`` in ``build_dir``; return the built library."""
    cmake = _tool("cmake", "install CMake 3.18 or newer (e.g. apt-get install cmake)")
    _tool(os.environ.get("CXX", "c++").split()[0], "install a C++17 compiler (e.g. apt-get install g++)")
    ov_cmake = openvino_cmake_dir(openvino_dir())
    configure = [cmake, "-S", str(NATIVE_SOURCE), "-B", str(build_dir), f"-DOpenVINO_DIR={ov_cmake}",
                 f"-DFCN_DEPLOY_VERSION={__version__}",
                 f"-DCMAKE_BUILD_TYPE={'Release' if config.optimize else 'Debug'}",
                 f"-DFCN_SANITIZE={'ON' if config.sanitize else 'OFF'}"]
    _run(configure, "configuring the native library with CMake", config.verbose)
    build = [cmake, "--build", str(build_dir), "--parallel", str(min(4, os.cpu_count() or 1))]
    _run(build + (["--verbose"] if config.verbose else []), "compiling the native library", config.verbose)
    return build_dir / LIBRARY_NAME


def _fill(template: str, **values: str) -> str:
    text = (TEMPLATES / template).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


def _openvino_version(libraries: list[Path]) -> str:
    """OpenVINO's version as its core library's file name says it (libopenvino.so.2641 -> 2641)."""
    core = next((p for p in libraries if p.name.startswith("libopenvino.so.")), None)
    return core.name.removeprefix("libopenvino.so.") if core else "unknown"


def _install_file(source: Path, target: Path, mode: int = 0o644) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
        tmp.chmod(mode)


def build_native_library(out_dir: str | os.PathLike[str],
                         config: NativeBuildConfig = NativeBuildConfig()) -> NativeBuildResult:
    """Build the native library into the deployment folder ``out_dir`` (see the module docstring).

    Compilation happens in a temporary folder inside ``out_dir``; each file then replaces its target by a
    rename, so a failed build leaves a previous installation untouched.
    """
    started = time.perf_counter()
    prefix = install_prefix(out_dir)
    libraries = openvino_libraries(openvino_dir())
    lib = prefix / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".capi-build-", dir=prefix) as workdir:
        _progress(f"compiling {LIBRARY_NAME} (C++ over OpenVINO, with CMake)")
        built = compile_native(Path(workdir), config)
        _progress(f"installing into {prefix}")
        _install_file(built, lib / LIBRARY_NAME, 0o755)
    installed = []
    for library in libraries:
        _install_file(library, lib / library.name, 0o755)
        installed.append(lib / library.name)
    header = prefix / "include" / HEADER_NAME
    write_text_atomic(header, (PACKAGE_DIR / HEADER_NAME).read_text(encoding="utf-8"))
    pkgconfig = lib / "pkgconfig" / "fcn_deploy.pc"
    write_text_atomic(pkgconfig, _fill("fcn_deploy.pc.in", VERSION=__version__,
                                       OPENVINO_VERSION=_openvino_version(libraries)))
    cmake_package = lib / "cmake" / "fcn_deploy"
    write_text_atomic(cmake_package / "fcn_deployConfig.cmake", _fill("fcn_deployConfig.cmake.in", VERSION=__version__))
    write_text_atomic(cmake_package / "fcn_deployConfigVersion.cmake",
                      _fill("fcn_deployConfigVersion.cmake.in", VERSION=__version__))
    for name in EXAMPLE_FILES:
        if (EXAMPLE_DIR / name).is_file():
            write_text_atomic(prefix / "share" / "fcn_deploy" / "example" / name,
                              (EXAMPLE_DIR / name).read_text(encoding="utf-8"))
    seconds = time.perf_counter() - started
    _progress(f"done in {seconds:.1f} s")
    return NativeBuildResult(prefix, lib / LIBRARY_NAME, header, pkgconfig, cmake_package, tuple(installed), seconds)
