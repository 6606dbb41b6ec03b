"""Helpers of the Ray tests: image folders, and the CLI run inside the test network with the cluster's token."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]


def write_images(folder: Path, count: int, size: tuple[int, int] = (64, 96), start: int = 0) -> list[Path]:
    """``count`` random RGB PNGs named 000.png, 001.png, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(start, start + count):
        rgb = np.random.default_rng(index).integers(0, 256, (*size, 3), dtype=np.uint8)
        paths.append(folder / f"{index:03d}.png")
        Image.fromarray(rgb).save(paths[-1])
    return paths


def cli_command(prefix: tuple[str, ...], *args: str) -> list[str]:
    """``fcn-deploy ARGS`` from this checkout, run inside the test network."""
    return [*prefix, sys.executable, "-m", "fcn_deploy.cli", *args]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI run: this checkout importable, and the test cluster's token settings."""
    from fcn_deploy.cluster import loopback_environment

    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, **loopback_environment(), "PYTHONPATH": path, **extra}


HOOKS = Path(__file__).resolve().parent / "image_hooks"


def hooked_env(**extra: str) -> dict[str, str]:
    """``cli_env`` whose Python processes (the driver, Ray's node and workers) load ``image_hooks``: set
    FCN_TEST_KILL_ON_OPEN or FCN_TEST_HANG_ON_OPEN in ``extra`` to make a worker die or hang on one image."""
    env = cli_env(**extra)
    env["PYTHONPATH"] = os.pathsep.join((str(HOOKS), env["PYTHONPATH"]))
    return env


def processes_with(variable: str, value: str) -> list[int]:
    """Live processes of this user whose environment holds ``variable=value`` (all a job started inherit it)."""
    marker = f"{variable}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
