"""The ``tritonserver`` binary that PyTriton bundles (Python backend only), and the environment it needs.

The Python backend's stub links ``libpython3.x.so``; unless the running interpreter's library folder comes first
on ``LD_LIBRARY_PATH``, a system libpython of another patch version can be loaded and models fail to load
(``'_thread.RLock' object has no attribute '_recursion_count'``).
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from collections.abc import Mapping
from pathlib import Path

from fcn_deploy.deps import require


def python_backend_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with this interpreter's libpython and bin folders first."""
    env = dict(os.environ if base is None else base)
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, env.get("LD_LIBRARY_PATH", "")) if p)
    env["PATH"] = os.pathsep.join(p for p in (str(Path(sys.executable).parent), env.get("PATH", "")) if p)
    return env


def prepare_bundled_server(workdir: str | os.PathLike[str]) -> Path:
    """Copy PyTriton's tritonserver (binary, Python backend, this Python's stub) to ``workdir``; return its folder."""
    pytriton = require("pytriton")
    source = Path(pytriton.__file__).parent / "tritonserver"
    target = Path(workdir) / "tritonserver"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("python_backend_stubs"))
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = source / "python_backend_stubs" / version / "triton_python_backend_stub"
    shutil.copy(stub, target / "backends" / "python" / "triton_python_backend_stub")
    return target


def bundled_server_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment to run the bundled binary: its shared libraries and this interpreter's libpython."""
    env = python_backend_env(base)
    libs = Path(require("pytriton").__file__).parent.parent / "nvidia_pytriton.libs"
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (env.get("LD_LIBRARY_PATH", ""), str(libs)) if p)
    return env


def bundled_server_command(server: Path, repository: Path, models: list[str], host: str, http_port: int,
                           grpc_port: int, metrics_port: int) -> list[str]:
    """Command line serving ``models`` of ``repository`` (explicit loading: other models are left alone)."""
    return [
        str(server / "bin" / "tritonserver"), f"--model-repository={repository}",
        f"--backend-directory={server / 'backends'}", f"--cache-directory={server / 'caches'}",
        "--model-control-mode=explicit", *(f"--load-model={name}" for name in models),
        f"--http-address={host}", f"--http-port={http_port}", f"--grpc-address={host}", f"--grpc-port={grpc_port}",
        f"--metrics-address={host}", f"--metrics-port={metrics_port}", "--exit-timeout-secs=10",
    ]
