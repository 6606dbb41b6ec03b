"""A traced model stored as data: the graph of ``torch.export`` plus its tensors, reloadable without the
Python class that defined it.

Imported models (torchvision nets, any ``nn.Module``) are kept in checkpoints this way. The graph is the
exporter's JSON serialisation and the tensors are plain tensors, so a checkpoint still loads with
``torch.load(weights_only=True)``: nothing is ever unpickled, and no user code runs on load.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fcn_deploy.deps import require
from fcn_deploy.errors import ArtifactError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

PROGRAM_FORMAT = "torch.export-json-1"


def program_entry(program: Any) -> dict[str, Any]:
    """The checkpoint entry of an ExportedProgram: its graph as JSON bytes (a uint8 tensor) and its tensors."""
    torch = require("torch")
    from torch._export.serde import serialize as serde

    constants = dict(program.constants)
    odd = sorted(name for name, value in constants.items() if not isinstance(value, torch.Tensor))
    if odd:
        raise ArtifactError(f"the traced model holds non-tensor constants ({', '.join(odd)}), which cannot be "
                            "stored without pickling")
    graph = serde.serialize(program).exported_program
    return {
        "format": PROGRAM_FORMAT,
        "torch_version": str(torch.__version__),
        "graph": torch.frombuffer(bytearray(graph), dtype=torch.uint8),
        "state_dict": dict(program.state_dict),  # parameters stay nn.Parameter (the deserialiser checks this)
        "constants": constants,
    }


def load_program(entry: Any, source: str) -> nn.Module:
    """The runnable module of a checkpoint's program entry (eval-mode graph; inputs checked against its shapes)."""
    torch = require("torch")
    from torch._export.serde import serialize as serde

    if not isinstance(entry, dict) or entry.get("format") != PROGRAM_FORMAT:
        raise ArtifactError(f"{source} holds a traced model in an unknown format",
                            "re-import the model with this version of fcn-deploy")
    try:
        artifact = serde.SerializedArtifact(
            entry["graph"].numpy().tobytes(), dict(entry["state_dict"]), dict(entry["constants"]), {}
        )
        graph = serde.deserialize(artifact).module()
    except Exception as exc:  # the deserialiser raises many types
        raise ArtifactError(
            f"{source}: the traced model does not load in PyTorch {torch.__version__} (written by "
            f"{entry.get('torch_version', 'an unknown version')}: {type(exc).__name__}: {exc})",
            "re-import the model with the PyTorch version that runs the export",
        ) from exc
    return _traced_class()(graph)


_TRACED: list[type] = []


def _traced_class() -> type:
    """The wrapper class, defined once torch is imported (keeps ``import fcn_deploy.program`` light)."""
    if _TRACED:
        return _TRACED[0]
    nn = require("torch.nn")

    class TracedModel(nn.Module):
        """A stored graph as a module: it was traced in eval mode, so ``train``/``eval`` only set the flag."""

        def __init__(self, graph: nn.Module) -> None:
            super().__init__()
            self.graph = graph

        def train(self, mode: bool = True) -> TracedModel:
            self.training = mode
            return self

        def forward(self, x):
            return self.graph(x)

    _TRACED.append(TracedModel)
    return TracedModel
