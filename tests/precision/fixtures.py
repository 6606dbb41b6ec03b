"""Fixtures of the precision, build and TensorRT tests: synthetic VOC data, a trained checkpoint, ONNX exports.

The shared session fixtures (``synthetic_voc_dir``, ``trained_checkpoint``) are used when the suite has them;
otherwise tiny ones are made here. Everything is module- or session-scoped: exports and training are slow.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CALIB_CROP = (64, 96)
NUM_CROPS = 8
# the fixtures are imported into several test modules (each import is its own fixture definition): memoise
# their results so that one session trains and exports once
_MADE: dict[str, Path] = {}


def _once(key: str, make) -> Path:
    if key not in _MADE:
        _MADE[key] = Path(make())
    return _MADE[key]


def _shared(request: pytest.FixtureRequest, name: str):
    """A session fixture of tests/conftest.py when it exists, else None."""
    try:
        return request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        return None


@pytest.fixture(scope="session")
def precision_voc_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic VOC-layout folder (train and val splits)."""
    shared = _shared(request, "synthetic_voc_dir")
    if shared is not None:
        return Path(shared)
    from fcn_deploy.data.synth import SynthConfig, synthesize

    return _once("voc", lambda: synthesize(SynthConfig(out=tmp_path_factory.mktemp("precision_voc") / "VOC2012",
                                                       num=24, size=(96, 128), seed=3)).root)


@pytest.fixture(scope="session")
def precision_checkpoint(request: pytest.FixtureRequest, precision_voc_dir: Path,
                         tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A briefly trained fcn32s checkpoint (its predictions are not trivial, so parity means something)."""
    shared = _shared(request, "trained_checkpoint")
    if shared is not None:
        return Path(shared)
    pytest.importorskip("torch")
    from fcn_deploy.train import TrainConfig, train

    return _once("checkpoint", lambda: train(TrainConfig(
        data=precision_voc_dir, arch="fcn32s", epochs=12, batch_size=4, lr=0.02, momentum=0.9, weight_decay=1e-4,
        crop=CALIB_CROP, out_dir=tmp_path_factory.mktemp("precision_ckpt"), num_workers=0)).best_checkpoint)


@pytest.fixture(scope="session")
def precision_onnx(precision_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The FP32 ONNX export of the trained checkpoint (with its sidecar naming the checkpoint)."""
    pytest.importorskip("onnxruntime")
    from fcn_deploy.export import ExportConfig, export_onnx

    return _once("onnx", lambda: export_onnx(precision_checkpoint, tmp_path_factory.mktemp("precision_onnx") / "fcn.onnx",
                                             ExportConfig(verify=False, progress=False)).onnx_path)


@pytest.fixture(scope="session")
def random_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The FP32 export of a random-weight fcn32s (for tests of graphs and files, not of accuracy)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from fcn_deploy.checkpoint import Checkpoint, save_checkpoint
    from fcn_deploy.export import ExportConfig, export_onnx
    from fcn_deploy.model import build_model
    from fcn_deploy.spec import ModelSpec, ShapeRange

    def make() -> Path:
        folder = tmp_path_factory.mktemp("random_onnx")
        torch.manual_seed(0)
        spec = ModelSpec(arch="fcn32s", crop_size=CALIB_CROP,
                         shape_range=ShapeRange((1, 32, 32), (1, 64, 96), (4, 512, 512)))
        checkpoint = save_checkpoint(folder / "fcn32s.pt", build_model("fcn32s", 21), Checkpoint(spec=spec))
        return export_onnx(checkpoint, folder / "fcn.onnx", ExportConfig(verify=False, progress=False)).onnx_path

    return _once("random_onnx", make)
