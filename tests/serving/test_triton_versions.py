"""The Triton release -> TensorRT table: full NGC tags, container families told apart, unknown tags refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from fcn_deploy.errors import ArtifactError, InputError
from fcn_deploy.serving.triton_versions import (
    KNOWN_FAMILIES,
    TRITON_TENSORRT,
    check_plan_for_triton,
    parse_triton_tag,
    triton_tensorrt,
)

PLAN = Path("fcn.fp16.engine")


def test_every_row_is_a_full_tag_of_a_known_family() -> None:
    for tag, version in TRITON_TENSORRT.items():
        parsed = parse_triton_tag(tag)
        assert parsed.family in KNOWN_FAMILIES and parsed.tag == tag
        assert all(part.isdigit() for part in version.split(".")) and version.count(".") >= 2, (tag, version)


@pytest.mark.parametrize(("tag", "shipped"), [
    ("24.05-py3", "10.0.1.6"),
    ("24.02-py3", "8.6.3"),
    ("23.04-py3", "8.6.1.2"),
    ("25.12-trtllm-python-py3", "10.13.3.9"),
    ("nvcr.io/nvidia/tritonserver:24.05-py3", "10.0.1.6"),
])
def test_a_confirmed_row_gives_the_containers_tensorrt(tag: str, shipped: str) -> None:
    assert triton_tensorrt(tag) == shipped


def test_a_standard_container_accepts_its_own_tensorrt_and_refuses_another() -> None:
    assert check_plan_for_triton(PLAN, {"tensorrt_version": "10.0.1.6"}, "24.05-py3") == "10.0.1.6"
    assert check_plan_for_triton(PLAN, {"tensorrt_version": "8.6.3.1"}, "24.02-py3") == "8.6.3.1"
    with pytest.raises(InputError, match=r"built with TensorRT 10\.16\.1\.11, but Triton 24\.05-py3 runs TensorRT "
                                         r"10\.0\.1\.6") as caught:
        check_plan_for_triton(PLAN, {"tensorrt_version": "10.16.1.11"}, "24.05-py3")
    assert "build the engine with TensorRT 10.0.1.6" in caught.value.hint
    with pytest.raises(InputError, match="runs TensorRT 8.6.3"):
        check_plan_for_triton(PLAN, {"tensorrt_version": "8.6.1.6"}, "24.02-py3")
    with pytest.raises(ArtifactError, match="does not record the TensorRT version"):
        check_plan_for_triton(PLAN, {}, "24.05-py3")


def test_the_families_of_one_release_are_not_confused() -> None:
    assert triton_tensorrt("25.12-trtllm-python-py3") == "10.13.3.9"
    with pytest.raises(InputError, match="'25.12-py3' is not in fcn-deploy's table") as caught:
        triton_tensorrt("25.12-py3")
    assert "releases known for the standard Triton container: 23.04, 24.02, 24.05" in str(caught.value)


def test_a_release_without_its_container_is_refused_with_the_full_tags() -> None:
    with pytest.raises(InputError, match="names a Triton release but not its container") as caught:
        triton_tensorrt("24.05")
    assert "24.05-py3" in caught.value.hint and "24.05-trtllm-python-py3" in caught.value.hint


@pytest.mark.parametrize("tag", ["24.05-vllm-python-py3", "24.05-py3-igpu", "24.05-py3-min"])
def test_an_unknown_family_is_refused_naming_the_known_ones(tag: str) -> None:
    with pytest.raises(InputError, match="does not know the .* container family") as caught:
        triton_tensorrt(tag)
    assert "known: py3, trtllm-python-py3" in str(caught.value)


@pytest.mark.parametrize("tag", ["latest", "2405-py3", "24.5-py3", ""])
def test_what_is_not_an_ngc_tag_is_refused(tag: str) -> None:
    with pytest.raises(InputError, match="not an NGC tag"):
        triton_tensorrt(tag)
