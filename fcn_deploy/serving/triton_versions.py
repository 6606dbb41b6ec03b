"""Which TensorRT a Triton Inference Server container runs, so a plan is checked against it before export.

A TensorRT plan loads only in the TensorRT version that built it. ``triton export --triton-version TAG`` looks the
container's TensorRT up here and refuses a plan built with another one. The table holds the rows of NVIDIA's
Triton "Release Compatibility Matrix" (docs.nvidia.com, triton-inference-server user guide, introduction/
compatibility) that were checked when it was written, keyed by the NGC tag's release and container name; a tag
it does not hold is refused with the way to find its TensorRT version, never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fcn_deploy.errors import ArtifactError, InputError

SUPPORT_MATRIX = ("https://docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/introduction/"
                  "compatibility.html")
# NGC tag of nvcr.io/nvidia/tritonserver -> the TensorRT version that container ships
TRITON_TENSORRT: Mapping[str, str] = {
    "25.12-trtllm-python-py3": "10.13.3.9",
    "25.11-trtllm-python-py3": "10.13.3.9",
    "25.10-trtllm-python-py3": "10.11.0.33",
    "25.09-trtllm-python-py3": "10.11.0.33",
    "25.08-trtllm-python-py3": "10.11.0.33",
    "25.07-trtllm-python-py3": "10.10.0.31",
    "25.06-trtllm-python-py3": "10.10.0.31",
    "25.01-trtllm-python-py3": "10.8.0.43",
    "24.12-trtllm-python-py3": "10.7.0",
    "24.11-trtllm-python-py3": "10.6.0",
    "24.10-trtllm-python-py3": "10.4.0",
    "24.09-trtllm-python-py3": "10.4.0",
    "24.08-trtllm-python-py3": "10.3.0",
    "24.07-trtllm-python-py3": "10.1.0",
    "24.06-trtllm-python-py3": "10.0.1",
    "24.05-trtllm-python-py3": "10.0.1.6",
}


def triton_tensorrt(tag: str) -> str:
    """The TensorRT version of the Triton container ``tag`` (InputError naming the known tags otherwise)."""
    shipped = TRITON_TENSORRT.get(tag.strip())
    if shipped is None:
        raise InputError(f"--triton-version {tag!r} is not in fcn-deploy's table of Triton containers "
                         f"(known: {', '.join(TRITON_TENSORRT)})",
                         f"name the NGC tag exactly (e.g. 25.12-trtllm-python-py3), or look up its TensorRT version "
                         f"in {SUPPORT_MATRIX} and build the engine with that TensorRT; without --triton-version "
                         "the check is not made")
    return shipped


def same_tensorrt(built: str, shipped: str) -> bool:
    """Whether a plan built with TensorRT ``built`` is one ``shipped`` loads (every component the table gives)."""
    given = shipped.split(".")
    return built.split(".")[: len(given)] == given


def check_plan_for_triton(path: Path, sidecar: Mapping[str, Any], tag: str) -> str:
    """The TensorRT version a plan was built with, refused when the Triton container ``tag`` runs another."""
    shipped = triton_tensorrt(tag)
    built = str(sidecar.get("tensorrt_version") or "")
    if not built:
        raise ArtifactError(f"the sidecar of {path} does not record the TensorRT version the plan was built with",
                            "rebuild the engine with 'fcn-deploy build' (it records the version)")
    if not same_tensorrt(built, shipped):
        raise InputError(f"{path} was built with TensorRT {built}, but Triton {tag} runs TensorRT {shipped}: it "
                         "would refuse to load the plan",
                         f"build the engine with TensorRT {shipped} (pip install 'tensorrt-cu13=={shipped}' or inside "
                         f"the container), or pick the Triton release whose TensorRT is {built} ({SUPPORT_MATRIX})")
    return built


__all__ = ["SUPPORT_MATRIX", "TRITON_TENSORRT", "check_plan_for_triton", "same_tensorrt", "triton_tensorrt"]
