"""Fixtures of the precision tests: a synthetic VOC folder, a briefly trained checkpoint and its ONNX export.

The shared session fixtures (``synthetic_voc_dir``, ``trained_checkpoint``) are used when the suite has them;
otherwise tiny ones are made here. Everything is module- or session-scoped: exports and training are slow.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CALIB_CROP = (64, 96)
NUM_CROPS = 8


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

    return synthesize(SynthConfig(out=tmp_path_factory.mktemp("precision_voc") / "VOC2012", num=24,
                                  size=(96, 128), seed=3)).root


@pytest.fixture(scope="session")
def precision_checkpoint(request: pytest.FixtureRequest, precision_voc_dir: Path,
                         tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A briefly trained fcn32s checkpoint (its predictions are not trivial, so parity means something)."""
    shared = _shared(request, "trained_checkpoint")
    if shared is not None:
        return Path(shared)
    pytest.importorskip("torch")
    from fcn_deploy.train import TrainConfig, train

    result = train(TrainConfig(data=precision_voc_dir, arch="fcn32s", epochs=3, batch_size=8, lr=0.05,
                               crop=CALIB_CROP, out_dir=tmp_path_factory.mktemp("precision_ckpt"), num_workers=0))
    return Path(result.best_checkpoint)


@pytest.fixture(scope="session")
def precision_onnx(precision_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The FP32 ONNX export of the trained checkpoint (with its sidecar naming the checkpoint)."""
    pytest.importorskip("onnxruntime")
    from fcn_deploy.export import ExportConfig, export_onnx

    out = tmp_path_factory.mktemp("precision_onnx") / "fcn.onnx"
    return export_onnx(precision_checkpoint, out, ExportConfig(verify=False, progress=False)).onnx_path
