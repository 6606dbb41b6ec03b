"""Build libfcn_deploy.so: cffi's embedding mode around the C entry points in fcn_deploy_capi.c.

The library embeds the Python runtime of the environment it is built from. That interpreter, and the
sys.path it sees, are recorded at build time, so the library starts in a host process with no PATH,
PYTHONPATH or PYTHONHOME; libpython is found through an rpath, so no LD_LIBRARY_PATH is needed either.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fcn_deploy import __version__
from fcn_deploy.deps import require
from fcn_deploy.errors import MissingComponentError
from fcn_deploy.fileio import atomic_path, check_output_dir, write_text_atomic

PACKAGE_DIR = Path(__file__).resolve().parent
HEADER_NAME = "fcn_deploy.h"
LIBRARY_NAME = "libfcn_deploy.so"
PKGCONFIG_NAME = "fcn_deploy.pc"
MODULE_NAME = "_fcn_deploy_capi"

# What Python sees of the C side besides the header's types: the handle's key and the internal functions.
INTERNAL_CDEF = """
struct fcn_segmenter { long long key; ...; };

void _fcn_set_error(const char* message);
int _fcn_store_metadata(fcn_segmenter* handle, int num_classes, const char* names, size_t names_size,
                        const uint8_t* palette);

extern "Python" int _fcn_py_create(const char* model_path, const char* device, fcn_segmenter* handle);
extern "Python" int _fcn_py_apply(long long key, const fcn_image* images, int count, fcn_mask* masks);
extern "Python" int _fcn_py_destroy(long long key);
"""
_TYPEDEF = re.compile(r"typedef\s+(?:enum|struct)\s+\w+\s*(?:\{.*?\})?\s*\w+\s*;", re.DOTALL)
_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)


def header_cdef(header_text: str) -> str:
    """The header's typedefs (enums, structs, the opaque handle) without comments, for ffi.cdef."""
    return "\n".join(_TYPEDEF.findall(_COMMENT.sub("", header_text)))


# Run once inside the embedded interpreter: make the build environment importable, bind the functions.
INIT_CODE = """
import sys
for _entry in {paths!r}:
    if _entry not in sys.path:
        sys.path.append(_entry)
from {module} import ffi, lib
from fcn_deploy.capi.embedded import bind
bind(ffi, lib)
"""


@dataclass(frozen=True)
class CapiBuildConfig:
    """Options of ``fcn-deploy capi build``."""

    optimize: bool = True  # -O2 (else -O0 -g, for debugging the C side)
    verbose: bool = False  # show the compiler's command lines


@dataclass(frozen=True)
class CapiBuildResult:
    """Where the build put the library, the header and the pkg-config file."""

    library: Path
    header: Path
    pkgconfig: Path
    python: str
    seconds: float


def _progress(message: str) -> None:
    """One progress line on stderr."""
    print(f"capi: {message}", file=sys.stderr, flush=True)


def c_string(value: str) -> str:
    """A C string literal for ``value`` (file-system encoding; octal escapes for anything unusual)."""
    out = []
    for byte in os.fsencode(value):
        char = chr(byte)
        out.append(char if 32 <= byte < 127 and char not in '"\\?' else f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def python_library() -> tuple[Path, str, str]:
    """(directory, link name, soname) of this interpreter's shared libpython; MissingComponentError without one."""
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    soname = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY") or ""
    ldversion = sysconfig.get_config_var("LDVERSION") or f"{sys.version_info.major}.{sys.version_info.minor}"
    if not sysconfig.get_config_var("Py_ENABLE_SHARED") or not (Path(libdir) / soname).is_file():
        raise MissingComponentError(
            f"this Python ({sys.executable}) has no shared library libpython{ldversion}.so to embed",
            "use a Python built with --enable-shared (distribution packages, conda and "
            "pyenv with PYTHON_CONFIGURE_OPTS=--enable-shared all have one)",
        )
    return Path(libdir), f"python{ldversion}", soname


def c_compiler() -> str:
    """The C compiler this Python builds extensions with; MissingComponentError when it is absent."""
    command = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(command) is None:
        raise MissingComponentError(
            f"no C compiler: '{command}' is not on PATH", "install gcc (e.g. apt-get install build-essential)"
        )
    return command


def import_paths() -> list[str]:
    """The directories this interpreter imports from, plus the one holding the fcn_deploy package."""
    paths = [os.path.abspath(entry) for entry in sys.path if entry and os.path.isdir(entry)]
    paths.append(str(PACKAGE_DIR.parent.parent))
    return list(dict.fromkeys(paths))


def _prelude(libpython_soname: str) -> str:
    """C definitions of the build-time constants the C side needs."""
    return (
        f"#define FCN_BUILD_VERSION {c_string(__version__)}\n"
        f"#define FCN_BUILD_PYTHON {c_string(os.path.abspath(sys.executable))}\n"
        f"#define FCN_BUILD_LIBPYTHON {c_string(libpython_soname)}\n"
    )


def _compile(workdir: Path, config: CapiBuildConfig) -> Path:
    """Generate and compile the embedding module in ``workdir``; return the built library."""
    cffi = require("cffi")
    libdir, pylib, soname = python_library()
    ffi = cffi.FFI()
    ffi.cdef(header_cdef((PACKAGE_DIR / HEADER_NAME).read_text(encoding="utf-8")) + INTERNAL_CDEF)
    ffi.embedding_init_code(INIT_CODE.format(paths=import_paths(), module=MODULE_NAME))
    source = (PACKAGE_DIR / "fcn_deploy_capi.c").read_text(encoding="utf-8")
    ffi.set_source(
        MODULE_NAME,
        _prelude(soname) + source,
        include_dirs=[str(PACKAGE_DIR)],
        libraries=[pylib, "dl"],
        library_dirs=[str(libdir)],
        extra_compile_args=["-fvisibility=hidden", "-pthread"]
        + (["-O2"] if config.optimize else ["-O0", "-g"]),
        extra_link_args=[f"-Wl,-rpath,{libdir}", f"-Wl,-soname,{LIBRARY_NAME}", "-pthread"],
    )
    built = ffi.compile(tmpdir=str(workdir), target=LIBRARY_NAME, verbose=config.verbose)
    return Path(built)


def _pkgconfig_text(prefix: Path) -> str:
    """fcn_deploy.pc for a library installed under ``prefix`` (lib/, include/)."""
    template = (PACKAGE_DIR / "fcn_deploy.pc.in").read_text(encoding="utf-8")
    values = {
        "@PREFIX@": str(prefix),
        "@VERSION@": __version__,
        "@PYTHON_VERSION@": f"{sys.version_info.major}.{sys.version_info.minor}",
        "@PYTHON@": os.path.abspath(sys.executable),
    }
    for key, value in values.items():
        template = template.replace(key, value)
    return template


def install_prefix(out_dir: str | os.PathLike[str]) -> Path:
    """``out_dir`` as an absolute path; InputError when it is not or cannot become a folder."""
    return check_output_dir(out_dir, "--out").resolve()


def build_library(out_dir: str | os.PathLike[str], config: CapiBuildConfig = CapiBuildConfig()) -> CapiBuildResult:
    """Build the C library into ``out_dir``: lib/libfcn_deploy.so, include/fcn_deploy.h, lib/pkgconfig/fcn_deploy.pc.

    Compilation happens in a temporary folder inside ``out_dir``; each file then replaces its target by a
    rename, so a failed build leaves a previous installation untouched.
    """
    started = time.perf_counter()
    prefix = install_prefix(out_dir)
    _progress(f"checking the toolchain ({c_compiler()}) and the Python shared library ({python_library()[2]})")
    library = prefix / "lib" / LIBRARY_NAME
    header = prefix / "include" / HEADER_NAME
    pkgconfig = prefix / "lib" / "pkgconfig" / PKGCONFIG_NAME
    library.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".capi-build-", dir=prefix) as workdir:
        _progress(f"compiling {LIBRARY_NAME} (embeds {os.path.abspath(sys.executable)})")
        built = _compile(Path(workdir), config)
        _progress(f"installing into {prefix}")
        with atomic_path(library) as tmp:
            os.replace(built, tmp)
            tmp.chmod(0o755)
    write_text_atomic(header, (PACKAGE_DIR / HEADER_NAME).read_text(encoding="utf-8"))
    write_text_atomic(pkgconfig, _pkgconfig_text(prefix))
    seconds = time.perf_counter() - started
    _progress(f"done in {seconds:.1f} s")
    return CapiBuildResult(library, header, pkgconfig, os.path.abspath(sys.executable), seconds)
