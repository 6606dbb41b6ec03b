"""Registry of the command modules; each module exposes ``register(app)``."""

from __future__ import annotations

import importlib

import typer

# one module per pipeline stage, in data-flow order
COMMAND_MODULES = (
    "fcn_deploy.cli.data_cmd",
    "fcn_deploy.cli.train_cmd",
    "fcn_deploy.cli.export_cmd",
    "fcn_deploy.cli.precision_cmd",
    "fcn_deploy.cli.infer_cmd",
    "fcn_deploy.cli.parity_cmd",
    "fcn_deploy.cli.bench_cmd",
    "fcn_deploy.cli.capi_cmd",
)

_registered: set[int] = set()


def register(app: typer.Typer) -> None:
    """Add the commands of every module that exists (once per app)."""
    if id(app) in _registered:
        return
    _registered.add(id(app))
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(app)
