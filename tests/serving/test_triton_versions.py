"""The Triton release -> TensorRT table: full NGC tags, container families told apart, unknown tags refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from fcn_deploy.errors import ArtifactError, InputError
from fcn_deploy.serving.triton_versions import (
    KNOWN_FAMILIES,
    TRITON_CONTAINERS,
    TRITON_TENSORRT,
    check_plan_for_triton,
    parse_triton_tag,
    same_tensorrt,
    server_tensorrt,
    triton_tensorrt,
)

PLAN = Path("fcn.fp16.engine")


def test_every_row_is_a_full_tag_of_a_known_family_with_its_source() -> None:
    for tag, facts in TRITON_CONTAINERS.items():
        parsed = parse_triton_tag(tag)
        assert parsed.family in KNOWN_FAMILIES and parsed.tag == tag
        for version in (facts.tensorrt, facts.cuda or "0.0.0"):
            assert all(part.isdigit() for part in version.split(".")) and version.count(".") >= 2, (tag, version)
        assert "github.com" in facts.source or "docs.nvidia.com" in facts.source, tag
        assert TRITON_TENSORRT[tag] == facts.tensorrt and facts.cite


def test_a_release_notes_row_names_the_release_and_versions_it_was_read_in() -> None:
    facts = TRITON_CONTAINERS["25.01-py3"]
    assert (facts.tensorrt, facts.cuda) == ("10.8.0.43", "12.8.0.038")
    assert "release-notes/rel-25-01.html" in facts.source and "TensorRT 10.8.0.43" in facts.source
    assert facts.cite == "Triton 25.01 release notes"


def test_rows_the_source_contradicts_itself_on_are_left_out() -> None:
    for tag in ("24.04-trtllm-python-py3", "24.05-trtllm-python-py3", "24.06-trtllm-python-py3",
                "24.07-trtllm-python-py3"):
        assert tag not in TRITON_CONTAINERS


@pytest.mark.parametrize(("tag", "shipped"), [
    ("25.01-py3", "10.8.0.43"),
    ("24.10-py3", "10.5.0.18"),
    ("24.05-py3", "10.0.1.6"),
    ("24.02-py3", "8.6.3"),
    ("23.04-py3", "8.6.1.2"),
    ("25.12-trtllm-python-py3", "10.13.3.9"),
    ("nvcr.io/nvidia/tritonserver:24.05-py3", "10.0.1.6"),
])
def test_a_confirmed_row_gives_the_containers_tensorrt(tag: str, shipped: str) -> None:
    assert triton_tensorrt(tag) == shipped


def test_a_standard_container_accepts_its_own_tensorrt_and_refuses_another() -> None:
    assert check_plan_for_triton(PLAN, {"tensorrt_version": "10.0.1.6"}, "24.05-py3").version == "10.0.1.6"
    assert check_plan_for_triton(PLAN, {"tensorrt_version": "8.6.3.1"}, "24.02-py3").version == "8.6.3"
    with pytest.raises(InputError, match=r"built with TensorRT 10\.16\.1\.11, but Triton 24\.05-py3 runs TensorRT "
                                         r"10\.0\.1\.6") as caught:
        check_plan_for_triton(PLAN, {"tensorrt_version": "10.16.1.11"}, "24.05-py3")
    assert "build the engine where TensorRT 10.0.1.6 is installed" in caught.value.hint
    assert "no Triton container in fcn-deploy's table runs TensorRT 10.16.1.11" in caught.value.hint
    with pytest.raises(InputError, match="runs TensorRT 8.6.3"):
        check_plan_for_triton(PLAN, {"tensorrt_version": "8.6.1.6"}, "24.02-py3")
    with pytest.raises(ArtifactError, match="does not record the TensorRT version"):
        check_plan_for_triton(PLAN, {}, "24.05-py3")


def test_the_families_of_one_release_are_not_confused() -> None:
    assert triton_tensorrt("25.12-trtllm-python-py3") == "10.13.3.9"
    with pytest.raises(InputError, match="'25.12-py3' is not in fcn-deploy's table") as caught:
        triton_tensorrt("25.12-py3")
    assert "releases known for the standard Triton container: 23.04, 24.02, 24.05, 24.10, 25.01" in str(caught.value)
    assert "dpkg -l | grep libnvinfer" in caught.value.hint and "--triton-tensorrt VERSION" in caught.value.hint


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


def test_the_build_number_counts_where_the_source_gives_it() -> None:
    assert same_tensorrt("8.6.1.2", "8.6.1.2") and not same_tensorrt("8.6.1.6", "8.6.1.2")  # refused by Triton
    assert same_tensorrt("10.7.0.23", "10.7.0")  # NVIDIA's table gives three numbers only
    assert not same_tensorrt("10.16.1.11", "10.1") and not same_tensorrt("10.1.0", "10.16.1.11")


def test_a_mismatch_names_the_containers_that_run_the_plans_version() -> None:
    with pytest.raises(InputError, match="runs TensorRT 10.11.0.33") as caught:
        check_plan_for_triton(PLAN, {"tensorrt_version": "10.8.0.43"}, "25.10-trtllm-python-py3")
    hint = caught.value.hint
    assert "25.01-py3" in hint and "25.01-trtllm-python-py3" in hint and "25.02-trtllm-python-py3" in hint


def test_an_unknown_tag_is_checked_against_the_stated_tensorrt() -> None:
    server = check_plan_for_triton(PLAN, {"tensorrt_version": "10.16.1.11"}, "26.08-py3", stated="10.16.1.11")
    assert (server.tag, server.version, server.source) == ("26.08-py3", "10.16.1.11", "stated with --triton-tensorrt")
    with pytest.raises(InputError, match="built with TensorRT 10.16.1.11, but Triton 26.08-py3 runs TensorRT "
                                         r"10.15.1.29 \(from stated with --triton-tensorrt\)"):
        check_plan_for_triton(PLAN, {"tensorrt_version": "10.16.1.11"}, "26.08-py3", stated="10.15.1.29")


def test_a_stated_tensorrt_may_not_contradict_the_table() -> None:
    assert server_tensorrt("25.01-py3", stated="10.8.0.43").source == ("fcn-deploy's table, per Triton 25.01 "
                                                                        "release notes")
    with pytest.raises(InputError, match="contradicts fcn-deploy's table: 25.01-py3 runs TensorRT 10.8.0.43"):
        server_tensorrt("25.01-py3", stated="10.16.1.11")


@pytest.mark.parametrize("stated", ["10.8", "10.8.0.43-1+cuda12.8", "latest", ""])
def test_a_stated_tensorrt_must_be_a_full_version(stated: str) -> None:
    with pytest.raises(InputError, match="is not a TensorRT version") as caught:
        server_tensorrt("26.08-py3", stated=stated)
    assert "10.8.0.43" in caught.value.hint


def test_an_unknown_family_can_be_checked_against_a_stated_tensorrt() -> None:
    assert server_tensorrt("26.08-vllm-python-py3", stated="10.16.1.11").version == "10.16.1.11"
