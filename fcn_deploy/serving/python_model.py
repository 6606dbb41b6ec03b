"""The ``<name>_segment`` model of an exported repository, run by Triton's Python backend.

Each row of a request carries one encoded image; the model decodes it, segments it (whole or tiled) with
fcn-deploy's Segmenter and answers with the mask PNGs, the labels and empty errors, or with that request's own
error response, which names each of its images that failed. The network runs either as the repository's
``<name>`` model, called inside Triton (business-logic scripting: the tiles then run on Triton's TensorRT or
ONNX Runtime backend), or in this process.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from fcn_deploy.errors import ArtifactError, InputError
from fcn_deploy.runtime.base import Backend
from fcn_deploy.segmenter import Segmenter, SegmenterConfig
from fcn_deploy.serving.contract import IMAGE_INPUT, answer, request_outputs
from fcn_deploy.spec import ModelSpec


class TritonNetworkBackend(Backend):
    """A backend that runs each batch of tiles as an inference request to another model of the same server."""

    name = "triton"

    def __init__(self, spec: ModelSpec, model_name: str, utils: Any) -> None:
        super().__init__(spec)
        self.model_name = model_name
        self._utils = utils

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        utils = self._utils
        request = utils.InferenceRequest(model_name=self.model_name, requested_output_names=[self.spec.output_name],
                                         inputs=[utils.Tensor(self.spec.input_name, batch)])
        response = request.exec()
        if response.has_error():
            raise ArtifactError(f"the network model '{self.model_name}' failed: {response.error().message()}",
                                "check that it is loaded (its platform's backend must be present on this server)")
        return utils.get_output_tensor_by_name(response, self.spec.output_name).as_numpy()


def _parameters(model_config: dict[str, Any]) -> dict[str, str]:
    return {key: value.get("string_value", "") for key, value in model_config.get("parameters", {}).items()}


class TritonPythonModel:
    """Triton's Python-backend interface: ``initialize``, ``execute`` (a list of requests), ``finalize``."""

    def initialize(self, args: dict[str, str]) -> None:
        from fcn_deploy.runtime import BackendChoice, open_backend
        from fcn_deploy.serving.repository import SPEC_PARAMETER, VERSION

        self._utils = importlib.import_module("triton_python_backend_utils")
        parameters = _parameters(json.loads(args["model_config"]))
        spec = ModelSpec.from_json(parameters[SPEC_PARAMETER], source="the model config's spec parameter")
        runtime = parameters.get("network_runtime", "triton")
        network = parameters["network_model"]
        if runtime == "in_process":
            path = Path(args["model_repository"]).parent / network / VERSION / parameters["network_file"]
            choice = BackendChoice(parameters.get("network_backend") or "auto",
                                   parameters.get("network_precision") or "f32")
            backend = open_backend(path, parameters.get("device", "cpu"), choice)  # type: ignore[arg-type]
        elif runtime == "triton":
            backend = TritonNetworkBackend(spec, network, self._utils)
        else:
            raise InputError(f"unknown network_runtime {runtime!r}", "use 'triton' or 'in_process'")
        batch = min(int(parameters.get("network_max_batch") or spec.shape_range.max[0]), spec.shape_range.max[0])
        self._segmenter = Segmenter(backend, SegmenterConfig(batch=min(batch, 4)))
        self._max_pixels = int(parameters["max_pixels"]) if parameters.get("max_pixels") else None

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request: all its images' outputs, or an error naming each of its images that failed."""
        utils = self._utils
        images = [utils.get_input_tensor_by_name(request, IMAGE_INPUT) for request in requests]
        arrays = [image.as_numpy() if image is not None else np.zeros((0,), np.uint8) for image in images]
        responses = []
        for outcomes in answer(self._segmenter, arrays, self._max_pixels):
            errors = [outcome.error for outcome in outcomes if not outcome.ok]
            if errors:
                responses.append(utils.InferenceResponse(output_tensors=[], error=utils.TritonError("; ".join(errors))))
            else:
                tensors = [utils.Tensor(name, value) for name, value in request_outputs(outcomes).items()]
                responses.append(utils.InferenceResponse(output_tensors=tensors))
        return responses

    def finalize(self) -> None:
        self._segmenter.close()
