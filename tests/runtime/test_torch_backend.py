"""The PyTorch reference backend: a checkpoint, its spec, the device choice and the input contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fcn_deploy.checkpoint import Checkpoint, save_checkpoint
from fcn_deploy.errors import InputError, MissingComponentError, ShapeError
from fcn_deploy.model import build_model
from fcn_deploy.runtime import open_backend
from fcn_deploy.runtime.torch_backend import TorchBackend
from fcn_deploy.spec import ModelSpec, ShapeRange

RANGE = ShapeRange((1, 32, 32), (1, 64, 64), (4, 256, 256))


@pytest.fixture(scope="module")
def source_model() -> torch.nn.Module:
    """The model the checkpoint is saved from, kept in memory as the oracle."""
    torch.manual_seed(0)
    return build_model("fcn32s", 21).eval()


@pytest.fixture(scope="module")
def checkpoint(source_model: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("torch_backend") / "fcn32s.pt"
    return save_checkpoint(path, source_model, Checkpoint(spec=ModelSpec(arch="fcn32s", shape_range=RANGE)))


def test_auto_device_and_spec(checkpoint: Path) -> None:
    with open_backend(checkpoint) as backend:
        assert isinstance(backend, TorchBackend)
        assert backend.name == "pytorch"
        assert backend.device == ("cuda" if torch.cuda.is_available() else "cpu")
        assert backend.spec.arch == "fcn32s"
        assert backend.spec.shape_range == RANGE


def test_logits_match_the_model_that_was_saved(checkpoint: Path, source_model: torch.nn.Module) -> None:
    batch = np.random.default_rng(0).standard_normal((2, 3, 64, 96), dtype=np.float32)
    with TorchBackend(checkpoint, "cpu") as backend:
        logits = backend.infer(batch)
    with torch.inference_mode():
        expected = source_model(torch.from_numpy(batch)).numpy()
    assert logits.dtype == np.float32 and logits.shape == (2, 21, 64, 96)
    np.testing.assert_array_equal(logits, expected)


def test_non_aligned_input_is_refused(checkpoint: Path) -> None:
    with TorchBackend(checkpoint, "cpu") as backend, pytest.raises(ShapeError, match="not a multiple of 32"):
        backend.infer(np.zeros((1, 3, 100, 100), np.float32))


def test_cuda_request_on_this_machine(checkpoint: Path) -> None:
    """Without a CUDA device an explicit 'cuda' is refused with the reason (exit code 2)."""
    if torch.cuda.is_available():
        assert TorchBackend(checkpoint, "cuda").device == "cuda"
        return
    with pytest.raises(MissingComponentError, match="device 'cuda' requested") as info:
        TorchBackend(checkpoint, "cuda")
    assert info.value.exit_code == 2
    assert "--device cpu" in (info.value.hint or "")


def test_unknown_device_is_refused(checkpoint: Path) -> None:
    with pytest.raises(InputError, match="unknown device"):
        TorchBackend(checkpoint, "tpu")
