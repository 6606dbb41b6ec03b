"""The command modules, in data-flow order; each defines its commands as module functions and ``register(app)``."""

from __future__ import annotations

import importlib

import typer

COMMAND_MODULES = (
    "fcn_deploy.cli.data_cmd",
    "fcn_deploy.cli.train_cmd",
    "fcn_deploy.cli.import_cmd",
    "fcn_deploy.cli.export_cmd",
    "fcn_deploy.cli.precision_cmd",
    "fcn_deploy.cli.infer_cmd",
    "fcn_deploy.cli.parity_cmd",
    "fcn_deploy.cli.bench_cmd",
    "fcn_deploy.cli.capi_cmd",
    "fcn_deploy.cli.serving_cmd",
)


def register_all(app: typer.Typer) -> None:
    """Attach the commands of every module (each imports heavy libraries only inside its commands)."""
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)
