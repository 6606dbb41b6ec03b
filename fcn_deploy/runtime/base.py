"""The backend protocol: one spec, ``infer`` on a batch, resources released as a context manager."""

from __future__ import annotations

import abc
from types import TracebackType

import numpy as np

from fcn_deploy.errors import ArtifactError, InputError, ShapeError
from fcn_deploy.spec import ModelSpec

#: inference precision hints (OpenVINO's): 'f32' computes as the artifact says, 'bf16' in bfloat16; the one list
INFERENCE_PRECISIONS: tuple[str, ...] = ("f32", "bf16")


class Backend(abc.ABC):
    """A loaded artifact that maps an input batch to N×C×H×W float32 logits.

    The input is what the spec declares: normalised N×3×H×W float32, or N×H×W×3 uint8 for
    artifacts exported with the preprocessing in the graph. Every input is checked first.
    """

    #: short name shown in reports ('pytorch', 'onnxruntime', 'tensorrt')
    name: str = "backend"

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    @property
    def device(self) -> str:
        """Where inference really runs ('cpu' or 'cuda')."""
        return "cpu"

    _closed = False
    #: backends that can return a labels output alone set this (see ``has_labels``)
    _labels_supported = False

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Check ``batch`` against the spec, then run it; returns N×C×H×W float32 logits."""
        self.require_open()
        self.check_input(batch)
        return self._infer(batch)

    @property
    def has_labels(self) -> bool:
        """True when the artifact computes per-pixel labels itself (an export with the argmax in the graph)."""
        return self._labels_supported and self.spec.labels_name is not None

    def infer_labels(self, batch: np.ndarray) -> np.ndarray:
        """Check ``batch``, then return the model's own N×H×W uint8 labels without copying out the logits."""
        self.require_open()
        if not self.has_labels:
            raise ArtifactError(f"this {self.name} model has no labels output",
                                "export it with the argmax in the graph: fcn-deploy export --with-argmax")
        self.check_input(batch)
        return self._infer_labels(batch)

    def _infer_labels(self, batch: np.ndarray) -> np.ndarray:
        """Run an already-validated batch and return its labels output as uint8 (``has_labels`` backends)."""
        raise NotImplementedError

    def require_open(self) -> None:
        """InputError once ``close`` has released the backend (instead of a crash inside the runtime)."""
        if self._closed:
            raise InputError(f"the {self.name} backend was closed", "open the model again")

    @abc.abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray:
        """Run an already-validated batch."""

    def release_working_memory(self) -> None:
        """Hand the memory the runtime keeps between runs back to the system (after a large image, before the
        next is decoded); the next run allocates it again. A no-op for runtimes that keep none."""
        self.require_open()
        self._release_working_memory()

    def _release_working_memory(self) -> None:
        """Free the runtime's cached working memory (backends with an allocation cache override this)."""

    def close(self) -> None:
        """Release sessions, engines and device memory; later ``infer`` calls fail with a clear error."""
        if not self._closed:
            self._closed = True
            self._release()

    def _release(self) -> None:
        """Free what the backend holds (subclasses with resources override this)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- input contract ----------------------------------------------------------------------

    def input_hw(self, batch: np.ndarray) -> tuple[int, int]:
        """(height, width) of a batch in the spec's layout."""
        return self.spec.batch_hw(batch.shape)[1:]

    def check_input(self, batch: np.ndarray) -> None:
        """Raise ShapeError naming the problem when ``batch`` breaks the spec's contract."""
        spec = self.spec
        if not isinstance(batch, np.ndarray):
            raise ShapeError(f"input must be a numpy array, got {type(batch).__name__}")
        expected_dtype = np.uint8 if spec.takes_uint8 else np.float32
        if batch.dtype != expected_dtype:
            raise ShapeError(f"input dtype is {batch.dtype}, this model takes {spec.layout_name}")
        if batch.ndim != 4 or batch.shape[spec.channel_axis] != 3:
            raise ShapeError(f"input shape is {batch.shape}, this model takes {spec.layout_name}")
        height, width = self.input_hw(batch)
        align = spec.alignment
        if height % align or width % align:
            raise ShapeError(
                f"input height×width {height}×{width} is not a multiple of {align}",
                f"pad the image to a multiple of {align} (the segmenter does this for you)",
            )
        if not spec.shape_range.contains(int(batch.shape[0]), height, width):
            raise ShapeError(
                f"input batch×height×width {batch.shape[0]}×{height}×{width} is outside the model's "
                f"supported range {spec.shape_range.min} .. {spec.shape_range.max}",
                "use tiled inference (the segmenter's slide mode) or a smaller batch",
            )
