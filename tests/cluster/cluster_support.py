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
