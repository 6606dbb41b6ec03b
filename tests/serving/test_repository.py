"""``triton export``: the repository layout, configs parsed against Triton's schema and checked against the model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fcn_deploy.cli import run
from fcn_deploy.contract import read_sidecar
from fcn_deploy.errors import ArtifactError, InputError
from fcn_deploy.runtime import BackendChoice
from fcn_deploy.serving.model_config import Enum, parameters_of, parse_config, to_pbtxt
from fcn_deploy.serving.repository import (
    CONFIG_NAME,
    RepositoryConfig,
    check_repository_model,
    export_repository,
    read_artifact,
)
from fcn_deploy.spec import ModelSpec

pytestmark = pytest.mark.usefixtures("config_schema")

ENGINE_FACTS = {"format": "fcn-deploy-engine-1", "tensorrt_version": "10.16.1.11", "gpu": "NVIDIA L4",
                "compute_capability": "8.9", "labels_dtype": None}


@pytest.fixture
def fake_engine(random_onnx: Path, tmp_path: Path) -> Path:
    """A stand-in engine file with the sidecar a build writes (TensorRT itself is not needed for configs)."""
    engine = tmp_path / "fcn.fp16.engine"
    engine.write_bytes(b"not a real plan")
    spec, _ = read_sidecar(random_onnx)
    document = {"spec": spec.replace(precision="fp16").to_dict(), **ENGINE_FACTS}
    engine.with_name(engine.name + ".json").write_text(json.dumps(document))
    return engine


@pytest.mark.parametrize(("labels_dtype", "declared"), [("uint8", "TYPE_UINT8"), ("int64", "TYPE_INT64")])
def test_a_plan_declares_the_labels_dtype_its_build_recorded(fake_engine: Path, tmp_path: Path, labels_dtype: str,
                                                             declared: str) -> None:
    from fcn_deploy.serving.model_config import data_type_name

    spec, document = read_sidecar(fake_engine)
    document.update(spec=spec.replace(labels_name="labels").to_dict(), labels_dtype=labels_dtype)
    fake_engine.with_name(fake_engine.name + ".json").write_text(json.dumps(document))
    result = export_repository(fake_engine, tmp_path / "repo", RepositoryConfig(name="seg"))
    network = parse_config((result.network / CONFIG_NAME).read_text(), "network")
    assert {t.name: data_type_name(t.data_type) for t in network.output}["labels"] == declared


def test_a_plan_whose_sidecar_does_not_record_the_labels_dtype_is_refused(fake_engine: Path, tmp_path: Path) -> None:
    spec, document = read_sidecar(fake_engine)
    document.update(spec=spec.replace(labels_name="labels").to_dict())
    document.pop("labels_dtype", None)
    fake_engine.with_name(fake_engine.name + ".json").write_text(json.dumps(document))
    with pytest.raises(ArtifactError, match="labels dtype") as caught:
        export_repository(fake_engine, tmp_path / "repo", RepositoryConfig(name="seg"))
    assert "rebuild" in caught.value.hint and not (tmp_path / "repo" / "seg").exists()


def test_triton_export_of_a_plan_records_its_tensorrt_and_refuses_another_triton(fake_engine: Path,
                                                                                tmp_path: Path) -> None:
    from fcn_deploy.serving.triton_versions import TRITON_TENSORRT

    spec, document = read_sidecar(fake_engine)
    document["tensorrt_version"] = "10.13.3.9"
    fake_engine.with_name(fake_engine.name + ".json").write_text(json.dumps(document))
    assert TRITON_TENSORRT["25.12-trtllm-python-py3"] == "10.13.3.9"
    result = export_repository(fake_engine, tmp_path / "repo",
                               RepositoryConfig(name="seg", triton_version="25.12-trtllm-python-py3"))
    parameters = parameters_of(parse_config((result.network / CONFIG_NAME).read_text(), "network"))
    assert parameters["tensorrt_version"] == "10.13.3.9"
    assert parameters["triton_version"] == "25.12-trtllm-python-py3" and parameters["triton_tensorrt"] == "10.13.3.9"
    assert parameters["triton_tensorrt_source"] == ("fcn-deploy's table, per Triton's TensorRT-LLM container "
                                                    "compatibility table")
    with pytest.raises(InputError, match="TensorRT 10.13.3.9.*runs TensorRT 10.11.0.33") as caught:
        export_repository(fake_engine, tmp_path / "other", RepositoryConfig(triton_version="25.10-trtllm-python-py3"))
    assert "build the engine where TensorRT 10.11.0.33 is installed" in caught.value.hint
    with pytest.raises(InputError, match="not in fcn-deploy's table"):
        export_repository(fake_engine, tmp_path / "other", RepositoryConfig(triton_version="99.01-py3"))
    assert not (tmp_path / "other").exists() or not any((tmp_path / "other").iterdir())


def test_triton_export_checks_a_plan_against_a_standard_py3_container(fake_engine: Path, tmp_path: Path) -> None:
    spec, document = read_sidecar(fake_engine)
    document["tensorrt_version"] = "10.0.1.6"
    fake_engine.with_name(fake_engine.name + ".json").write_text(json.dumps(document))
    result = export_repository(fake_engine, tmp_path / "repo", RepositoryConfig(name="seg", triton_version="24.05-py3"))
    parameters = parameters_of(parse_config((result.network / CONFIG_NAME).read_text(), "network"))
    assert parameters["triton_version"] == "24.05-py3" and parameters["tensorrt_version"] == "10.0.1.6"
    with pytest.raises(InputError, match="TensorRT 10.0.1.6.*Triton 24.02-py3 runs TensorRT 8.6.3"):
        export_repository(fake_engine, tmp_path / "other", RepositoryConfig(triton_version="24.02-py3"))
    with pytest.raises(InputError, match="names a Triton release but not its container"):
        export_repository(fake_engine, tmp_path / "other", RepositoryConfig(triton_version="24.05"))
    assert not (tmp_path / "other").exists() or not any((tmp_path / "other").iterdir())


def test_triton_export_of_a_tag_outside_the_table_needs_the_stated_tensorrt(fake_engine: Path, tmp_path: Path) -> None:
    spec, document = read_sidecar(fake_engine)
    document["tensorrt_version"] = "10.16.1.11"
    fake_engine.with_name(fake_engine.name + ".json").write_text(json.dumps(document))
    with pytest.raises(InputError, match="'26.08-py3' is not in fcn-deploy's table") as caught:
        export_repository(fake_engine, tmp_path / "other", RepositoryConfig(triton_version="26.08-py3"))
    assert "--triton-tensorrt" in caught.value.hint
    with pytest.raises(InputError, match="runs TensorRT 10.15.1.29"):
        export_repository(fake_engine, tmp_path / "other",
                          RepositoryConfig(triton_version="26.08-py3", triton_tensorrt="10.15.1.29"))
    assert not (tmp_path / "other").exists() or not any((tmp_path / "other").iterdir())
    result = export_repository(fake_engine, tmp_path / "repo", RepositoryConfig(
        name="seg", triton_version="26.08-py3", triton_tensorrt="10.16.1.11"))
    parameters = parameters_of(parse_config((result.network / CONFIG_NAME).read_text(), "network"))
    assert parameters["triton_tensorrt"] == "10.16.1.11"
    assert parameters["triton_tensorrt_source"] == "stated with --triton-tensorrt"


def test_triton_tensorrt_without_triton_version_is_refused() -> None:
    with pytest.raises(InputError, match="no --triton-version was given"):
        RepositoryConfig(triton_tensorrt="10.16.1.11")


def test_triton_version_is_refused_for_an_onnx_model(random_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="ONNX Runtime"):
        export_repository(random_onnx, tmp_path / "repo", RepositoryConfig(triton_version="25.12-trtllm-python-py3"))


def test_onnx_repository_layout_and_configs(random_onnx: Path, tmp_path: Path) -> None:
    result = export_repository(random_onnx, tmp_path / "repo", RepositoryConfig(max_batch=2, instances=2))
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["fcn", "fcn_segment"]
    assert (result.network / "1" / "model.onnx").read_bytes() == random_onnx.read_bytes()
    network = parse_config((result.network / CONFIG_NAME).read_text(), "network")
    assert network.platform == "onnxruntime_onnx" and network.max_batch_size == 2
    assert [(t.name, list(t.dims)) for t in network.input] == [("image", [3, -1, -1])]
    assert [(t.name, list(t.dims)) for t in network.output] == [("logits", [21, -1, -1])]
    assert network.dynamic_batching.max_queue_delay_microseconds == 2000
    assert network.instance_group[0].count == 2 and network.instance_group[0].kind == 2  # KIND_CPU
    parameters = parameters_of(network)
    spec = ModelSpec.from_json(parameters["fcn_deploy.spec"])
    assert spec == read_artifact(random_onnx).spec
    assert parameters["classes"].split(",")[15] == "person" and parameters["alignment"] == "32"
    assert parameters["shape_max"] == "4x512x512" and parameters["mean"] == "0.485,0.456,0.406"
    segment = parse_config((result.segment / CONFIG_NAME).read_text(), "segment")
    assert segment.backend == "python" and segment.name == "fcn_segment"
    assert [t.name for t in segment.input] == ["image"] and [t.name for t in segment.output] == ["mask", "labels", "error"]
    assert parameters_of(segment)["network_model"] == "fcn" and parameters_of(segment)["network_runtime"] == "triton"
    assert "fcn_deploy.serving.python_model" in (result.segment / "1" / "model.py").read_text()
    assert not [p for p in (tmp_path / "repo").iterdir() if p.name.startswith(".")]  # no staging left


def test_engine_repository_is_a_gpu_tensorrt_plan_with_its_sidecar(fake_engine: Path, tmp_path: Path) -> None:
    result = export_repository(fake_engine, tmp_path / "repo", RepositoryConfig(name="seg"))
    plan = result.network / "1" / "model.plan"
    assert plan.read_bytes() == fake_engine.read_bytes()
    assert read_sidecar(plan)[1]["tensorrt_version"] == "10.16.1.11"
    network = parse_config((result.network / CONFIG_NAME).read_text(), "network")
    assert network.platform == "tensorrt_plan" and network.instance_group[0].kind == 1  # KIND_GPU
    assert parameters_of(network)["gpu"] == "NVIDIA L4" and parameters_of(network)["precision"] == "fp16"
    assert parameters_of(parse_config((result.segment / CONFIG_NAME).read_text(), "s"))["device"] == "cuda"
    check_repository_model(result.network)
    with pytest.raises(InputError, match="GPU only"):
        export_repository(fake_engine, tmp_path / "other", RepositoryConfig(device="cpu"))


def test_a_typo_in_a_config_is_refused_with_the_field_named() -> None:
    text = to_pbtxt({"name": "fcn", "platform": "onnxruntime_onnx", "max_batch_size": 4})
    assert parse_config(text, "ok").max_batch_size == 4
    with pytest.raises(ArtifactError, match="max_bach_size"):
        parse_config(text.replace("max_batch_size", "max_bach_size"), "typo")
    with pytest.raises(ArtifactError, match="TYPE_FLOAT32"):
        parse_config(to_pbtxt({"input": [{"name": "x", "data_type": Enum("TYPE_FLOAT32"), "dims": [1]}]}), "enum")


@pytest.mark.parametrize(("old", "new", "words"), [
    ("data_type: TYPE_FP32\n  dims: [ 3", "data_type: TYPE_UINT8\n  dims: [ 3", "TYPE_UINT8"),
    ('name: "logits"', 'name: "scores"', "outputs are"),
    ("dims: [ 21, -1, -1 ]", "dims: [ 21, -1 ]", "dims"),
    ('platform: "onnxruntime_onnx"', 'platform: "tensorrt_plan"', "platform"),
    ("max_batch_size: 4", "max_batch_sise: 4", "max_batch_sise"),
])
def test_a_config_that_contradicts_its_model_is_refused(random_onnx, tmp_path, old, new, words) -> None:
    result = export_repository(random_onnx, tmp_path / "repo")
    config = result.network / CONFIG_NAME
    config.write_text(config.read_text().replace(old, new, 1))
    with pytest.raises(ArtifactError, match=words):
        check_repository_model(result.network)


def test_bad_requests_are_refused_and_nothing_is_written(random_onnx, trained_checkpoint_or_pt, tmp_path) -> None:
    with pytest.raises(InputError, match="exceeds the model's maximum batch of 4"):
        export_repository(random_onnx, tmp_path / "repo", RepositoryConfig(max_batch=8))
    with pytest.raises(ArtifactError, match="not .pt"):
        export_repository(trained_checkpoint_or_pt, tmp_path / "repo")
    with pytest.raises(InputError, match="not a valid Triton model name"):
        RepositoryConfig(name="a/b")
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())
    export_repository(random_onnx, tmp_path / "repo")
    with pytest.raises(InputError, match="--overwrite"):
        export_repository(random_onnx, tmp_path / "repo")
    export_repository(random_onnx, tmp_path / "repo", RepositoryConfig(overwrite=True, max_batch=1))
    assert parse_config((tmp_path / "repo" / "fcn" / CONFIG_NAME).read_text(), "c").max_batch_size == 1


def test_the_segment_model_carries_the_backend_choice(random_onnx, tmp_path) -> None:
    config = RepositoryConfig(network_runtime="in_process", backend=BackendChoice("openvino", "bf16"))
    result = export_repository(random_onnx, tmp_path / "repo", config)
    parameters = parameters_of(parse_config((result.segment / CONFIG_NAME).read_text(), "segment"))
    assert (parameters["network_backend"], parameters["network_precision"]) == ("openvino", "bf16")
    result = export_repository(random_onnx, tmp_path / "plain", RepositoryConfig(backend=BackendChoice("onnxruntime")))
    assert parameters_of(parse_config((result.segment / CONFIG_NAME).read_text(), "s"))["network_backend"] == "onnxruntime"


@pytest.mark.parametrize(("model", "config", "words"), [
    ("onnx", RepositoryConfig(backend=BackendChoice("openvino")), "add --segment-network in_process"),
    ("onnx", RepositoryConfig(network_runtime="in_process", device="gpu", backend=BackendChoice("openvino")),
     "OpenVINO backend runs on the CPU"),
    ("onnx", RepositoryConfig(network_runtime="in_process", backend=BackendChoice("tensorrt")),
     "--backend tensorrt cannot run"),
    ("engine", RepositoryConfig(network_runtime="in_process", backend=BackendChoice("openvino")),
     "--backend openvino cannot run"),
])
def test_a_backend_the_segment_model_cannot_honour_is_refused(random_onnx, fake_engine, tmp_path, model, config,
                                                              words) -> None:
    with pytest.raises(InputError, match=words):
        export_repository(random_onnx if model == "onnx" else fake_engine, tmp_path / "repo", config)
    assert not (tmp_path / "repo").exists()


@pytest.fixture
def trained_checkpoint_or_pt(tmp_path: Path) -> Path:
    """Any .pt file: Triton export refuses checkpoints by their suffix before reading them."""
    path = tmp_path / "fcn32s.pt"
    path.write_bytes(b"checkpoint")
    return path


def test_cli_triton_export(random_onnx, tmp_path, capsys) -> None:
    out = tmp_path / "repo"
    assert run(["triton", "export", str(random_onnx), "--out", str(out), "--name", "voc", "--max-batch", "2",
                "--instances", "1", "--max-queue-delay-us", "500", "--device", "cpu",
                "--segment-network", "in_process"]) == 0
    assert "voc_segment" in capsys.readouterr().out
    segment = parse_config((out / "voc_segment" / CONFIG_NAME).read_text(), "segment")
    assert parameters_of(segment)["network_runtime"] == "in_process"
    assert run(["triton", "export", str(random_onnx), "--out", str(out), "--name", "voc"]) == 1
    shutil.rmtree(out)


def test_cli_triton_export_passes_the_stated_tensorrt(fake_engine: Path, tmp_path: Path, capsys) -> None:
    spec, document = read_sidecar(fake_engine)
    document["tensorrt_version"] = "10.16.1.11"
    fake_engine.with_name(fake_engine.name + ".json").write_text(json.dumps(document))
    out = tmp_path / "repo"
    assert run(["triton", "export", str(fake_engine), "--out", str(out), "--triton-version", "26.08-py3"]) == 1
    assert "--triton-tensorrt VERSION" in capsys.readouterr().err
    assert run(["triton", "export", str(fake_engine), "--out", str(out), "--triton-version", "26.08-py3",
                "--triton-tensorrt", "10.16.1.11"]) == 0
    parameters = parameters_of(parse_config((out / "fcn" / CONFIG_NAME).read_text(), "network"))
    assert parameters["triton_tensorrt"] == "10.16.1.11"


def _bf16_stand_in(ir: Path, folder: Path) -> Path:
    """A copy of the FP32 IR asking for BF16 in its runtime info, as a BF16 build writes it (with its sidecar's
    hashes), made without a BF16 CPU: the repository only describes the IR, it does not compile it."""
    import openvino

    from fcn_deploy.contract import ir_weights_path, write_sidecar
    from fcn_deploy.fileio import sha256_file

    model = openvino.Core().read_model(str(ir))
    model.set_rt_info("bf16", ["runtime_options", "INFERENCE_PRECISION_HINT"])
    xml = folder / "fcn.bf16.xml"
    folder.mkdir(parents=True, exist_ok=True)
    openvino.save_model(model, str(xml), compress_to_fp16=False)
    spec, document = read_sidecar(ir)
    write_sidecar(xml, spec, {**document, "precision": "bf16", "inference_precision": "bf16",
                              "xml_sha256": sha256_file(xml), "bin_sha256": sha256_file(ir_weights_path(xml))})
    return xml


def test_ir_repository_runs_the_network_on_tritons_openvino_backend(tiny_ir: Path, tmp_path: Path) -> None:
    result = export_repository(tiny_ir, tmp_path / "repo", RepositoryConfig(max_batch=2))
    version = result.network / "1"
    assert sorted(p.name for p in version.iterdir()) == ["model.bin", "model.xml", "model.xml.json"]
    assert (version / "model.xml").read_bytes() == tiny_ir.read_bytes()
    assert (version / "model.bin").read_bytes() == tiny_ir.with_suffix(".bin").read_bytes()
    network = parse_config((result.network / CONFIG_NAME).read_text(), "network")
    assert network.backend == "openvino" and network.platform == "" and result.platform == "openvino"
    onnx = read_artifact(tiny_ir.parent.parent / "export" / "fcn.onnx")  # the IR's tensors are the ONNX file's
    for declared, expected in ((network.input, onnx.inputs), (network.output, onnx.outputs)):
        assert [(t.name, t.data_type, list(t.dims)) for t in declared] == [
            (t.name, _type(t.data_type), list(t.dims)) for t in expected]
    assert network.instance_group[0].kind == 2 and network.max_batch_size == 2  # KIND_CPU
    parameters = parameters_of(network)
    assert ModelSpec.from_json(parameters["fcn_deploy.spec"]) == read_sidecar(tiny_ir)[0]
    assert parameters["ir_precision"] == "f32" and parameters["inference_precision"] == "f32"
    segment = parameters_of(parse_config((result.segment / CONFIG_NAME).read_text(), "segment"))
    assert segment["network_file"] == "model.xml" and segment["network_model"] == "fcn"
    check_repository_model(result.network)  # the copied IR is read back and its hashes checked
    (version / "model.bin").write_bytes((version / "model.bin").read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ArtifactError, match="not the file its sidecar describes"):
        check_repository_model(result.network)


def _type(data_type: str) -> int:
    from fcn_deploy.serving.model_config import config_schema

    return config_schema().DataType.Value(data_type)


def test_a_bf16_irs_precision_hint_travels_in_the_ir_and_is_stated(tiny_ir: Path, tmp_path: Path) -> None:
    import openvino

    bf16 = _bf16_stand_in(tiny_ir, tmp_path / "engines")
    result = export_repository(bf16, tmp_path / "repo")
    parameters = parameters_of(parse_config((result.network / CONFIG_NAME).read_text(), "network"))
    assert parameters["ir_precision"] == "bf16" and parameters["inference_precision"] == "bf16"
    served = openvino.Core().read_model(str(result.network / "1" / "model.xml"))
    assert served.get_rt_info()["runtime_options"]["INFERENCE_PRECISION_HINT"].astype(str) == "bf16"


def test_an_ir_is_refused_on_a_gpu_and_with_a_triton_version(tiny_ir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="runs on the CPU"):
        export_repository(tiny_ir, tmp_path / "repo", RepositoryConfig(device="gpu"))
    with pytest.raises(InputError, match="run by OpenVINO"):
        export_repository(tiny_ir, tmp_path / "repo", RepositoryConfig(triton_version="24.05-py3"))
    assert not (tmp_path / "repo").exists()
