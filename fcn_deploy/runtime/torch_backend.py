"""The PyTorch reference backend: a training checkpoint run in eager mode."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fcn_deploy.checkpoint import load_model
from fcn_deploy.deps import require
from fcn_deploy.devices import check_device, torch_device
from fcn_deploy.runtime.base import Backend


class TorchBackend(Backend):
    """A checkpoint (.pt/.pth) in PyTorch: the reference every exported artifact is compared with."""

    name = "pytorch"

    def __init__(self, path: str | os.PathLike[str], device: str = "auto", *, threads: int = 0) -> None:
        self.path = Path(path)
        self._device = torch_device(check_device(device)).type
        if threads > 0:  # PyTorch's intra-op pool is per process
            require("torch").set_num_threads(threads)
        model, info = load_model(self.path)
        super().__init__(info.spec)
        self.model = model.to(self._device)
        self._torch = require("torch")
        mean = np.asarray(self.spec.mean, np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(self.spec.std, np.float32).reshape(1, 3, 1, 1)
        self._mean = self._torch.from_numpy(mean).to(self._device)
        self._std = self._torch.from_numpy(std).to(self._device)

    @property
    def device(self) -> str:
        return self._device

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self._device)
            if self.spec.takes_uint8:
                x = (x.permute(0, 3, 1, 2).float() / 255.0 - self._mean) / self._std
            return self.model(x).float().cpu().numpy()

    def _release(self) -> None:
        self.model = None
