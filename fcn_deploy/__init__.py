"""fcn-deploy: train, export, quantise, build and run fully convolutional segmentation networks."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``fcn_deploy.import_module`` without importing torch at ``import fcn_deploy``."""
    if name == "import_module":
        from fcn_deploy.importers.module import import_module

        return import_module
    raise AttributeError(f"module 'fcn_deploy' has no attribute {name!r}")
