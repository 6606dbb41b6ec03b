"""The precision fixtures (defined in fixtures.py, shared with tests/test_build.py and the TensorRT backend tests)."""

from precision.fixtures import (  # noqa: F401
    precision_checkpoint,
    precision_onnx,
    precision_voc_dir,
    random_onnx,
)
