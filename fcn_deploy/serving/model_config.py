"""Triton ``config.pbtxt`` files: written from plain values, then parsed against Triton's own schema.

Every config fcn-deploy writes goes through ``parse_config`` (``model_config_pb2.ModelConfig`` from tritonclient,
read with ``google.protobuf.text_format``) before it is put in place, so a misspelt field or a wrong enum value is
an error here, not when Triton loads the repository.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fcn_deploy.deps import require
from fcn_deploy.errors import ArtifactError


@dataclass(frozen=True)
class Enum:
    """A protobuf enum value, written bare (``TYPE_FP32``) rather than quoted."""

    name: str


def to_pbtxt(fields: Mapping[str, Any], indent: int = 0) -> str:
    """Protobuf text format of nested values: dicts are messages, lists of dicts repeated messages."""
    pad = "  " * indent
    lines = []
    for key, value in fields.items():
        if isinstance(value, Mapping):
            lines.append(f"{pad}{key} {{\n{to_pbtxt(value, indent + 1)}{pad}}}")
        elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)) and value \
                and all(isinstance(item, Mapping) for item in value):
            lines.extend(f"{pad}{key} {{\n{to_pbtxt(item, indent + 1)}{pad}}}" for item in value)
        elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
            lines.append(f"{pad}{key}: [ {', '.join(_scalar(item) for item in value)} ]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return "".join(line + "\n" for line in lines)


def _scalar(value: Any) -> str:
    """One scalar in text format: enums bare, booleans lower-case, strings JSON-quoted (a valid text escape)."""
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"cannot write {type(value).__name__} in a model config")


def string_parameters(values: Mapping[str, str]) -> list[dict[str, Any]]:
    """Entries of the config's ``parameters`` map (string values)."""
    return [{"key": key, "value": {"string_value": value}} for key, value in values.items()]


def config_schema() -> Any:
    """tritonclient's compiled copy of Triton's model_config.proto."""
    require("google.protobuf")
    return require("tritonclient.grpc.model_config_pb2")


def parse_config(text: str, source: str) -> Any:
    """The ModelConfig message of ``text``; ArtifactError naming ``source`` and the parser's reason if invalid."""
    text_format = require("google.protobuf.text_format")
    config = config_schema().ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ArtifactError(f"{source} is not a valid Triton model config ({exc})",
                            "fix the field named above; see Triton's model_config.proto") from exc
    return config


def data_type_name(config_value: int) -> str:
    """The ``TYPE_*`` name of a DataType enum value."""
    return config_schema().DataType.Name(config_value)


def parameters_of(config: Any) -> dict[str, str]:
    """A parsed config's string parameters."""
    return {key: value.string_value for key, value in config.parameters.items()}


__all__ = ["Enum", "data_type_name", "parameters_of", "parse_config", "string_parameters", "to_pbtxt"]
