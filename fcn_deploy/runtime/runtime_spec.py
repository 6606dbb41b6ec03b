"""The spec of an ONNX artifact as a runtime loaded it: metadata, sidecar and input/output checks in one place.

ONNX Runtime and OpenVINO both read the file's metadata and signatures themselves; each backend turns what its
runtime reports into a metadata map and TensorSignatures and calls ``checked_runtime_spec``, so a foreign or
inconsistent file is refused the same way by every backend, without parsing the model again in Python.

Non-finite weights: every stage that writes an ONNX refuses NaN or infinite weights and records the file's
SHA-256 in its sidecar. A file whose sidecar vouches for it that way is not read again; any other (no sidecar,
or one without the hash) is parsed once more and refused if a weight is NaN or infinite, since such a model
silently predicts background everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from fcn_deploy.contract import (
    TensorSignature,
    check_finite_onnx_file,
    check_sidecar,
    check_spec_against_signatures,
    sidecar_path,
    spec_from_metadata,
)
from fcn_deploy.spec import ModelSpec


def checked_runtime_spec(
    metadata: Mapping[str, str],
    inputs: Sequence[TensorSignature],
    outputs: Sequence[TensorSignature],
    path: Path,
) -> ModelSpec:
    """The spec in ``metadata``, checked against the sidecar (if present) and the runtime's inputs/outputs; the
    weights checked for NaN and infinity unless the sidecar's SHA-256 vouches for the file."""
    spec = spec_from_metadata(metadata, str(path))
    vouched = sidecar_path(path).is_file() and check_sidecar(path, spec)
    check_spec_against_signatures(list(inputs), list(outputs), spec, str(path))
    if not vouched:
        check_finite_onnx_file(path)
    return spec
