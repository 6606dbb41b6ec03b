"""Which TensorRT a Triton Inference Server container runs, so a plan is checked against it before export.

TensorRT's documentation (Version Compatibility, 10.16 and 11.x): "By default, TensorRT engines are compatible only
with the version of TensorRT used to build them"; only an engine built with ``BuilderFlag.VERSION_COMPATIBLE`` runs on
later versions. fcn-deploy's build never sets that flag, so a plan loads only in the TensorRT that built it, and
``triton export --triton-version TAG`` compares the plan's recorded version with the one the container runs, in
every component the source gives (the four of ``10.8.0.43``; NVIDIA's TensorRT-LLM table gives only three for some
containers). Triton refuses a plan whose build number alone differs (issue 5812 below: "expecting library version
8.6.1.2", plans of 8.6.1.6 refused).

NVIDIA publishes several container families per Triton release and they do not ship the same TensorRT, so the
lookup takes the full NGC tag (``25.01-py3``, not ``25.01``) and knows two families: the standard ``-py3``
container and ``-trtllm-python-py3``. Each row below was read in the source named beside it; a tag the table does
not hold is refused, with how to read the container's TensorRT and ``--triton-tensorrt`` to state it, never
guessed.
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


@dataclass(frozen=True)
class ContainerFacts:
    """What a published source says one Triton container runs: its TensorRT, its CUDA (a note), and the source
    (``cite`` names it in a few words for messages and the exported config)."""

    tensorrt: str
    cuda: str | None  # None where the source does not say
    source: str
    cite: str


_RELEASE_NOTES = ("github.com/triton-inference-server/server, docs/introduction/release_notes.md as published for "
                  "release {release} (the Markdown of docs.nvidia.com/deeplearning/triton-inference-server/"
                  "release-notes/rel-{dashed}.html), 'The container also includes': NVIDIA TensorRT {tensorrt}, "
                  "NVIDIA CUDA {cuda}")
_TRTLLM_TABLE = ("github.com/triton-inference-server/server, docs/introduction/compatibility.md on main (commit "
                 "0f963c9a8c6913aa4cd9b57ee04f9c2b76ee8d2a), table 'Container Name: trtllm-python-py3' (the user "
                 "guide's introduction/compatibility.html)")


def _release_notes(release: str, tensorrt: str, cuda: str) -> ContainerFacts:
    """A standard container whose release notes list its TensorRT and CUDA."""
    source = _RELEASE_NOTES.format(release=release, dashed=release.replace(".", "-"), tensorrt=tensorrt, cuda=cuda)
    return ContainerFacts(tensorrt, cuda, source, f"Triton {release} release notes")


def _trtllm(tensorrt: str, cuda: str) -> ContainerFacts:
    return ContainerFacts(tensorrt, cuda, _TRTLLM_TABLE, "Triton's TensorRT-LLM container compatibility table")


# NGC tag of nvcr.io/nvidia/tritonserver -> what that container runs. Only rows read in a source are here.
TRITON_CONTAINERS: Mapping[str, ContainerFacts] = {
    # Standard containers (YY.MM-py3). The release notes on docs.nvidia.com list the container's contents in a
    # table that their stored copies lose; the releases below are those whose list could be read.
    "25.01-py3": _release_notes("25.01", "10.8.0.43", "12.8.0.038"),
    "24.10-py3": _release_notes("24.10", "10.5.0.18", "12.6.2"),
    "24.05-py3": ContainerFacts("10.0.1.6", "12.4.1", (
        "github.com/triton-inference-server/server/issues/7374: the 24.05-py3 image has TensorRT 10.0.1.6, as the "
        "24.05 release of NVIDIA's framework containers lists (docs.nvidia.com/deeplearning/frameworks/"
        "mxnet-release-notes/rel-24-05.html: 'NVIDIA TensorRT 10.0.1.6', 'NVIDIA CUDA 12.4.1'); Triton's base "
        "image is that release's (issues/6959)"), "NVIDIA's 24.05 framework release notes"),
    "24.02-py3": ContainerFacts("8.6.3", None, (
        "github.com/triton-inference-server/server/issues/6959: a maintainer shows with dpkg that the 24.02-py3 "
        "image installs TensorRT 8.6.3 (its Python package reports 8.6.1; the libraries Triton loads are 8.6.3)"),
        "triton-inference-server/server issue 6959"),
    "23.04-py3": ContainerFacts("8.6.1.2", "12.1.0", (
        "github.com/triton-inference-server/server/issues/5812: tritonserver 23.04-py3 refuses a plan with "
        "'expecting library version 8.6.1.2'; a maintainer matches it to TRT_VERSION=8.6.1.2 of the 23.04 TensorRT "
        "container; CUDA from docs.nvidia.com/deeplearning/triton-inference-server/release-notes/rel-23-04.html"),
        "triton-inference-server/server issue 5812"),
    # TensorRT-LLM containers (YY.MM-trtllm-python-py3), all from the one table. Left out: 24.04 and 24.05
    # (issues/7374 and triton_cli pull 59 show those images running TensorRT 9.x), 24.06 and 24.07 (earlier
    # revisions of the same table, docs/compatibility.md and docs/introduction/compatibility.md, gave 10.1.0 and
    # 10.2.0.19 where main gives 10.0.1 and 10.1.0: the source contradicts itself).
    "26.07-trtllm-python-py3": _trtllm("10.14.1.48", "13.1.0.036"),
    "26.06-trtllm-python-py3": _trtllm("10.14.1.48", "13.1.0.036"),
    "26.05-trtllm-python-py3": _trtllm("10.14.1.48", "13.1.0.036"),
    "26.04-trtllm-python-py3": _trtllm("10.14.1.48", "13.1.0.036"),
    "26.03-trtllm-python-py3": _trtllm("10.14.1.48", "13.1.0.036"),
    "26.02-trtllm-python-py3": _trtllm("10.13.3.9", "13.0.2.006"),
    "26.01-trtllm-python-py3": _trtllm("10.13.3.9", "13.0.2.006"),
    "25.12-trtllm-python-py3": _trtllm("10.13.3.9", "13.0.2.006"),
    "25.11-trtllm-python-py3": _trtllm("10.13.3.9", "13.0.2.006"),
    "25.10-trtllm-python-py3": _trtllm("10.11.0.33", "12.9.1.010"),
    "25.09-trtllm-python-py3": _trtllm("10.11.0.33", "12.9.1.010"),
    "25.08-trtllm-python-py3": _trtllm("10.11.0.33", "12.9.0.043"),
    "25.07-trtllm-python-py3": _trtllm("10.10.0.31", "12.9.0.036"),
    "25.06-trtllm-python-py3": _trtllm("10.10.0.31", "12.9.0.036"),
    "25.05-trtllm-python-py3": _trtllm("10.9.0.34", "12.8.1.012"),
    "25.04-trtllm-python-py3": _trtllm("10.9.0.34", "12.8.1.012"),
    "25.03-trtllm-python-py3": _trtllm("10.9.0.34", "12.8.1.012"),
    "25.02-trtllm-python-py3": _trtllm("10.8.0.43", "12.8.0.038"),
    "25.01-trtllm-python-py3": _trtllm("10.8.0.43", "12.8.0.038"),
    "24.12-trtllm-python-py3": _trtllm("10.7.0", "12.6.3"),
    "24.11-trtllm-python-py3": _trtllm("10.6.0", "12.6.3"),
    "24.10-trtllm-python-py3": _trtllm("10.4.0", "12.5.1.007"),
    "24.09-trtllm-python-py3": _trtllm("10.4.0", "12.5.1.007"),
    "24.08-trtllm-python-py3": _trtllm("10.3.0", "12.5.1.007"),
}
# NGC tag -> the TensorRT version that container runs
TRITON_TENSORRT: Mapping[str, str] = {tag: facts.tensorrt for tag, facts in TRITON_CONTAINERS.items()}

_TAG = re.compile(r"(?P<release>\d{2}\.\d{2})(?:-(?P<family>.+))?")
_VERSION = re.compile(r"\d+(\.\d+){2,3}")


@dataclass(frozen=True)
class TritonTag:
    """An NGC tag of the Triton container split into its release (YY.MM) and its container family."""

    release: str
    family: str

    @property
    def tag(self) -> str:
        return f"{self.release}-{self.family}"


@dataclass(frozen=True)
class ServerTensorRT:
    """The TensorRT a plan was checked against: the container's tag, the version and where it came from."""

    tag: str
    version: str
    source: str


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


def how_to_read_tensorrt(tag: str) -> str:
    """How a user reads the TensorRT version a Triton container runs (the libraries, not the Python package)."""
    return (f"read it in the container (docker run --rm {IMAGE}:{tag} bash -c 'dpkg -l | grep libnvinfer'; "
            f"its Python package may report another version) or in {SUPPORT_MATRIX}")


def triton_tensorrt(text: str) -> str:
    """The TensorRT version of the Triton container tagged ``text`` (InputError saying what is known otherwise)."""
    return server_tensorrt(text).version


def server_tensorrt(text: str, stated: str | None = None) -> ServerTensorRT:
    """The TensorRT of the container tagged ``text``: the table's row, else the version the user ``stated``.

    A tag the table lacks needs ``stated`` (``--triton-tensorrt``); one it holds must not be contradicted by it.
    """
    tag = parse_triton_tag(text)
    if stated is not None and not _VERSION.fullmatch(stated.strip()):
        raise InputError(f"--triton-tensorrt {stated!r} is not a TensorRT version", "give it as dpkg shows it without "
                         "the package suffix, e.g. 10.8.0.43 (three or four numbers)")
    row = TRITON_CONTAINERS.get(tag.tag)
    if row is not None:
        if stated is not None and not same_tensorrt(stated.strip(), row.tensorrt):
            raise InputError(f"--triton-tensorrt {stated.strip()} contradicts fcn-deploy's table: {tag.tag} runs "
                             f"TensorRT {row.tensorrt} (per {row.cite})",
                             f"drop --triton-tensorrt to use the table, or {how_to_read_tensorrt(tag.tag)}; a "
                             "container built by hand under that tag is not the published one, so export without "
                             "--triton-version")
        return ServerTensorRT(tag.tag, row.tensorrt, f"fcn-deploy's table, per {row.cite}")
    if stated is not None:
        return ServerTensorRT(tag.tag, stated.strip(), "stated with --triton-tensorrt")
    if tag.family not in KNOWN_FAMILIES:
        raise InputError(f"--triton-version {text.strip()!r}: fcn-deploy's table does not know the "
                         f"'{tag.family}' container family (known: {', '.join(KNOWN_FAMILIES)})",
                         f"{how_to_read_tensorrt(tag.tag)}, and state it with --triton-tensorrt VERSION")
    known = sorted(key.split("-", 1)[0] for key in TRITON_CONTAINERS if parse_triton_tag(key).family == tag.family)
    raise InputError(f"--triton-version {tag.tag!r} is not in fcn-deploy's table of Triton containers (releases "
                     f"known for {KNOWN_FAMILIES[tag.family]}: {', '.join(known)})",
                     f"{how_to_read_tensorrt(tag.tag)}, and state it with --triton-tensorrt VERSION")


def same_tensorrt(built: str, shipped: str) -> bool:
    """Whether a plan built with TensorRT ``built`` is one ``shipped`` loads (every component ``shipped`` gives)."""
    given = shipped.split(".")
    return built.split(".")[: len(given)] == given


def containers_running(version: str) -> list[str]:
    """The tags in the table whose TensorRT is ``version``."""
    return [tag for tag, facts in TRITON_CONTAINERS.items() if same_tensorrt(version, facts.tensorrt)]


def check_plan_for_triton(path: Path, sidecar: Mapping[str, Any], tag: str,
                          stated: str | None = None) -> ServerTensorRT:
    """The TensorRT the plan is checked against, refused when the Triton container ``tag`` runs another version."""
    server = server_tensorrt(tag, stated)
    built = str(sidecar.get("tensorrt_version") or "")
    if not built:
        raise ArtifactError(f"the sidecar of {path} does not record the TensorRT version the plan was built with",
                            "rebuild the engine with 'fcn-deploy build' (it records the version)")
    if not same_tensorrt(built, server.version):
        matching = containers_running(built)
        elsewhere = (f"serve it from a container that runs TensorRT {built} ({', '.join(matching)})" if matching else
                     f"no Triton container in fcn-deploy's table runs TensorRT {built}")
        raise InputError(f"{path} was built with TensorRT {built}, but Triton {server.tag} runs TensorRT "
                         f"{server.version} (from {server.source}): it would refuse to load the plan",
                         f"build the engine where TensorRT {server.version} is installed (the one inside that "
                         f"container); or {elsewhere}")
    return server


__all__ = ["IMAGE", "KNOWN_FAMILIES", "STANDARD", "SUPPORT_MATRIX", "TRITON_CONTAINERS", "TRITON_TENSORRT", "TRTLLM",
           "ContainerFacts", "ServerTensorRT", "TritonTag", "check_plan_for_triton", "containers_running",
           "how_to_read_tensorrt", "parse_triton_tag", "same_tensorrt", "server_tensorrt", "triton_tensorrt"]
