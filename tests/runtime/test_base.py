"""The backend protocol: every input is checked against the spec before inference."""

from __future__ import annotations

import numpy as np
import pytest

from fcn_deploy.errors import InputError, ShapeError
from fcn_deploy.runtime.base import Backend
from fcn_deploy.spec import INPUT_UINT8_NHWC, ModelSpec, ShapeRange

pytestmark = pytest.mark.runtime  # runs in the runtime install (no PyTorch) too

RANGE = ShapeRange((1, 32, 32), (1, 64, 64), (4, 256, 256))


class Recording(Backend):
    """Returns zero logits and records what reached ``_infer``."""

    name = "recording"

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.seen: list[tuple[int, ...]] = []
        self.releases = 0

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        self.seen.append(batch.shape)
        n, h, w = (batch.shape[0], *self.input_hw(batch))
        return np.zeros((n, self.spec.num_classes, h, w), np.float32)

    def _release(self) -> None:
        self.releases += 1


@pytest.fixture
def float_backend() -> Recording:
    return Recording(ModelSpec(arch="fcn32s", shape_range=RANGE))


def test_aligned_float_batch_runs(float_backend: Recording) -> None:
    out = float_backend.infer(np.zeros((2, 3, 64, 96), np.float32))
    assert out.shape == (2, 21, 64, 96)
    assert float_backend.seen == [(2, 3, 64, 96)]


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (np.zeros((1, 3, 100, 100), np.float32), "100×100 is not a multiple of 32"),
        (np.zeros((5, 3, 64, 64), np.float32), "outside the model's supported range"),
        (np.zeros((1, 3, 288, 64), np.float32), "outside the model's supported range"),
        (np.zeros((1, 3, 64, 64), np.float64), "dtype is float64"),
        (np.zeros((1, 64, 64, 3), np.float32), "takes N×3×H×W float32"),
        (np.zeros((3, 64, 64), np.float32), "takes N×3×H×W float32"),
    ],
)
def test_contract_violations_are_refused_before_inference(float_backend: Recording, batch, message) -> None:
    with pytest.raises(ShapeError, match=message):
        float_backend.infer(batch)
    assert float_backend.seen == []


def test_uint8_nhwc_spec_takes_raw_rgb() -> None:
    backend = Recording(ModelSpec(arch="fcn32s", shape_range=RANGE, input_format=INPUT_UINT8_NHWC))
    assert backend.infer(np.zeros((1, 32, 64, 3), np.uint8)).shape == (1, 21, 32, 64)
    with pytest.raises(ShapeError, match="N×H×W×3 uint8"):
        backend.infer(np.zeros((1, 3, 32, 64), np.float32))


def test_context_manager_closes(float_backend: Recording) -> None:
    with float_backend as backend:
        assert backend.device == "cpu"
    assert float_backend.releases == 1


def test_a_closed_backend_refuses_inference_and_releases_once(float_backend: Recording) -> None:
    float_backend.close()
    float_backend.close()
    assert float_backend.releases == 1
    with pytest.raises(InputError, match="was closed"):
        float_backend.infer(np.zeros((1, 3, 64, 64), np.float32))
    assert float_backend.seen == []


def test_a_missing_model_file_comes_with_a_fix(tmp_path):
    from fcn_deploy.errors import InputError
    from fcn_deploy.runtime import open_backend

    with pytest.raises(InputError, match="model file not found") as info:
        open_backend(tmp_path / "nope.onnx", "cpu")
    assert "fcn-deploy export" in info.value.hint
