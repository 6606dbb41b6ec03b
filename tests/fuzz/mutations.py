"""Hypothesis strategies shared by the fuzz targets: byte mutations of valid seed files, JSON values, budgets."""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import strategies as st

INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80", b"\xff\xff\xff\xff"]


def budget(examples: int) -> int:
    """``examples`` in the test suite; FCN_FUZZ_EXAMPLES (default 20000) under the long profile."""
    if os.environ.get("FCN_FUZZ_PROFILE") == "long":
        return int(os.environ.get("FCN_FUZZ_EXAMPLES", "20000"))
    return examples


@st.composite
def _mutation(draw: Any, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        position = draw(st.integers(0, len(data) - 1))
        operation = draw(st.sampled_from(("set", "set", "interesting", "insert", "delete", "truncate")))
        if operation == "set":
            data[position] = draw(st.integers(0, 255))
        elif operation == "interesting":
            value = draw(st.sampled_from(INTERESTING))
            data[position : position + len(value)] = value
        elif operation == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif operation == "delete":
            del data[position : position + draw(st.integers(1, 64))]
        else:
            del data[position:]
    return bytes(data)


def mutated(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """Valid files with a few bytes changed, inserted, deleted or cut off; now and then plain random bytes."""
    return st.one_of(_mutation(seeds), _mutation(seeds), _mutation(seeds), st.binary(max_size=512))


JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)), max_leaves=20)


@st.composite
def _json_variant(draw: Any, document: dict[str, Any]) -> str:
    """``document`` with some (nested) fields replaced by other JSON values or removed."""
    data = json.loads(json.dumps(document))
    for _ in range(draw(st.integers(1, 3))):
        target = data
        path = []
        while isinstance(target, (dict, list)) and target and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(target))) if isinstance(target, dict) else draw(
                st.integers(0, len(target) - 1))
            path.append((target, key))
            target = target[key]
        if not path:
            continue
        parent, key = path[-1]
        if isinstance(parent, dict) and draw(st.integers(0, 4)) == 0:
            del parent[key]
        else:
            parent[key] = draw(JSON_VALUES)
    return json.dumps(data)


def json_documents(valid: dict[str, Any]) -> st.SearchStrategy[str]:
    """Variants of a valid JSON document, other JSON values, and text that is not JSON at all."""
    return st.one_of(_json_variant(valid), _json_variant(valid), _json_variant(valid), JSON_VALUES.map(json.dumps),
                     st.text(max_size=64))
