"""Which TensorRT a Triton Inference Server container runs, so a plan is checked against it before export.

A TensorRT plan loads only in the TensorRT version that built it. ``triton export --triton-version TAG`` looks the
container's TensorRT up here and refuses a plan built with another one. NVIDIA publishes several container families
per Triton release and they do not ship the same TensorRT, so the lookup takes the full NGC tag (``25.01-py3``, not
``25.01``) and knows two families: the standard ``-py3`` container and ``-trtllm-python-py3``. Every row was checked
against the source named beside it; a tag the table does not hold is refused with where to look it up, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fcn_deploy.errors import ArtifactError, InputError

SUPPORT_MATRIX = "https://docs.nvidia.com/deeplearning/frameworks/support-matrix/index.html"
IMAGE = "nvcr.io/nvidia/tritonserver"
STANDARD = "py3"
TRTLLM = "trtllm-python-py3"
# container family (the tag after YY.MM-) -> what it is, for messages
KNOWN_FAMILIES: Mapping[str, str] = {
    STANDARD: "the standard Triton container",
    TRTLLM: "the TensorRT-LLM Triton container",
}

# NGC tag of nvcr.io/nvidia/tritonserver -> the TensorRT version that container runs.
TRITON_TENSORRT: Mapping[str, str] = {
    # Standard containers (YY.MM-py3).
    # github.com/triton-inference-server/server/issues/7374: the 24.05-py3 image has TensorRT 10.0.1.6, as the 24.05
    # release of NVIDIA's framework containers lists (docs.nvidia.com/deeplearning/frameworks/mxnet-release-notes/
    # rel-24-05.html: "NVIDIA TensorRT 10.0.1.6"); Triton's base image is that release's (issues/6959 below).
    "24.05-py3": "10.0.1.6",
    # github.com/triton-inference-server/server/issues/6959: a maintainer shows with dpkg that the 24.02-py3 image
    # installs TensorRT 8.6.3 (the release's framework support matrix lists the same).
    "24.02-py3": "8.6.3",
    # github.com/triton-inference-server/server/issues/5812: tritonserver 23.04-py3 refuses a plan with "expecting
    # library version 8.6.1.2"; a maintainer matches it to TRT_VERSION=8.6.1.2 of the 23.04 TensorRT container.
    "23.04-py3": "8.6.1.2",
    # TensorRT-LLM containers (YY.MM-trtllm-python-py3): github.com/triton-inference-server/server, file
    # docs/introduction/compatibility.md on main (commit 0f963c9a8c6913aa4cd9b57ee04f9c2b76ee8d2a), table "Container
    # Name: trtllm-python-py3", the same table as the user guide's introduction/compatibility.html. Its 24.04 and
    # 24.05 rows are left out: issues/7374 and triton_cli pull 59 show those images running TensorRT 9.x.
    "26.07-trtllm-python-py3": "10.14.1.48",
    "26.06-trtllm-python-py3": "10.14.1.48",
    "26.05-trtllm-python-py3": "10.14.1.48",
    "26.04-trtllm-python-py3": "10.14.1.48",
    "26.03-trtllm-python-py3": "10.14.1.48",
    "26.02-trtllm-python-py3": "10.13.3.9",
    "26.01-trtllm-python-py3": "10.13.3.9",
    "25.12-trtllm-python-py3": "10.13.3.9",
    "25.11-trtllm-python-py3": "10.13.3.9",
    "25.10-trtllm-python-py3": "10.11.0.33",
    "25.09-trtllm-python-py3": "10.11.0.33",
    "25.08-trtllm-python-py3": "10.11.0.33",
    "25.07-trtllm-python-py3": "10.10.0.31",
    "25.06-trtllm-python-py3": "10.10.0.31",
    "25.05-trtllm-python-py3": "10.9.0.34",
    "25.04-trtllm-python-py3": "10.9.0.34",
    "25.03-trtllm-python-py3": "10.9.0.34",
    "25.02-trtllm-python-py3": "10.8.0.43",
    "25.01-trtllm-python-py3": "10.8.0.43",
    "24.12-trtllm-python-py3": "10.7.0",
    "24.11-trtllm-python-py3": "10.6.0",
    "24.10-trtllm-python-py3": "10.4.0",
    "24.09-trtllm-python-py3": "10.4.0",
    "24.08-trtllm-python-py3": "10.3.0",
    "24.07-trtllm-python-py3": "10.1.0",
    "24.06-trtllm-python-py3": "10.0.1",
}

_TAG = re.compile(r"(?P<release>\d{2}\.\d{2})(?:-(?P<family>.+))?")


@dataclass(frozen=True)
class TritonTag:
    """An NGC tag of the Triton container split into its release (YY.MM) and its container family."""

    release: str
    family: str

    @property
    def tag(self) -> str:
        return f"{self.release}-{self.family}"


def parse_triton_tag(text: str) -> TritonTag:
    """The release and family of ``text`` (``25.01-py3``, optionally with the image name before a colon)."""
    given = text.strip()
    tag = given[len(IMAGE) + 1:] if given.startswith(IMAGE + ":") else given
    found = _TAG.fullmatch(tag)
    families = ", ".join(f"YY.MM-{family} ({what})" for family, what in KNOWN_FAMILIES.items())
    if found is None:
        raise InputError(f"--triton-version {given!r} is not an NGC tag of {IMAGE}",
                         f"name the tag as NGC spells it: {families}")
    if found["family"] is None:
        raise InputError(f"--triton-version {given!r} names a Triton release but not its container: the containers of "
                         "one release ship different TensorRT versions",
                         f"name the full tag, e.g. {tag}-{STANDARD} or {tag}-{TRTLLM}")
    return TritonTag(found["release"], found["family"])


def triton_tensorrt(text: str) -> str:
    """The TensorRT version of the Triton container tagged ``text`` (InputError saying what is known otherwise)."""
    tag = parse_triton_tag(text)
    if tag.family not in KNOWN_FAMILIES:
        raise InputError(f"--triton-version {text.strip()!r}: fcn-deploy's table does not know the "
                         f"'{tag.family}' container family (known: {', '.join(KNOWN_FAMILIES)})",
                         f"look its TensorRT version up in {SUPPORT_MATRIX} and build the engine with that TensorRT; "
                         "without --triton-version the check is not made")
    shipped = TRITON_TENSORRT.get(tag.tag)
    if shipped is None:
        known = sorted(key.split("-", 1)[0] for key in TRITON_TENSORRT if parse_triton_tag(key).family == tag.family)
        raise InputError(f"--triton-version {tag.tag!r} is not in fcn-deploy's table of Triton containers (releases "
                         f"known for {KNOWN_FAMILIES[tag.family]}: {', '.join(known)})",
                         f"look up the TensorRT version of {IMAGE}:{tag.tag} in {SUPPORT_MATRIX} and build the engine "
                         "with that TensorRT; without --triton-version the check is not made")
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
        raise InputError(f"{path} was built with TensorRT {built}, but Triton {tag.strip()} runs TensorRT {shipped}: "
                         "it would refuse to load the plan",
                         f"build the engine with TensorRT {shipped} (the one inside that container), or serve it from "
                         f"a Triton container whose TensorRT is {built} ({SUPPORT_MATRIX})")
    return built


__all__ = ["IMAGE", "KNOWN_FAMILIES", "STANDARD", "SUPPORT_MATRIX", "TRITON_TENSORRT", "TRTLLM", "TritonTag",
           "check_plan_for_triton", "parse_triton_tag", "same_tensorrt", "triton_tensorrt"]
