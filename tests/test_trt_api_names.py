"""Every TensorRT name the package uses exists in both the TensorRT 10.16 and 11.4 Python APIs.

TensorRT cannot be installed here, so the source is walked with ``ast``: attributes of the ``trt`` module
(nested ones such as ``trt.Logger.WARNING`` included) and methods called on the builder, network, parser,
config, profile, engine, context and runtime objects are looked up in the published API listings.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = REPO_ROOT / "fcn_deploy"
LISTINGS = REPO_ROOT.parent / "shared" / "tensorrt-api"
VERSIONS = ("tensorrt-10.16.1.11.json", "tensorrt-11.4.0.106.json")
# module dunders the introspection skipped by design (the listings cover public names only)
MODULE_DUNDERS = {"__version__"}
# variable (or self attribute) -> TensorRT class of the object it holds
OBJECT_CLASSES = {
    "builder": "Builder", "network": "INetworkDefinition", "parser": "OnnxParser", "config_trt": "IBuilderConfig",
    "optimization": "IOptimizationProfile", "cache": "ITimingCache", "timing": "ITimingCache", "plan": "IHostMemory", "error": "ParserError",
    "self._engine": "ICudaEngine", "self._context": "IExecutionContext", "context": "IExecutionContext",
    "self._runtime": "Runtime", "self._logger": "Logger", "logger": "Logger",
}
TRT_ALIASES = {"trt", "self._trt"}


def _dotted(node: ast.AST) -> str | None:
    """'a.b.c' for a chain of Name/Attribute nodes, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def used_names(source: str) -> tuple[set[tuple[str, ...]], set[tuple[str, str]]]:
    """(attribute paths under the trt module, (class, member) pairs called on TensorRT objects)."""
    module_paths: set[tuple[str, ...]] = set()
    members: set[tuple[str, str]] = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute):
            continue
        dotted = _dotted(node)
        if dotted is None:
            continue
        for alias in TRT_ALIASES:
            if dotted.startswith(alias + "."):
                module_paths.add(tuple(dotted[len(alias) + 1:].split(".")))
        owner = _dotted(node.value)
        if owner in OBJECT_CLASSES:
            members.add((OBJECT_CLASSES[owner], node.attr))
    return module_paths, members


def _known(listing: dict, path: tuple[str, ...]) -> bool:
    names = listing["names"]
    if path[0] in MODULE_DUNDERS and len(path) == 1:
        return True
    entry = names.get(path[0])
    for part in path[1:]:
        if entry is None:
            return False
        if part in entry.get("members", ()):
            entry = {}
            continue
        attribute = entry.get("attributes", {}).get(part)
        if attribute is None:
            return False
        inherited = attribute.get("inherited_from")
        entry = names.get(attribute.get("class", part), {}) if attribute.get("kind") in ("class", "enum") else {}
        if inherited:
            entry = {}
    return entry is not None


def _package_usage() -> tuple[set[tuple[str, ...]], set[tuple[str, str]]]:
    paths: set[tuple[str, ...]] = set()
    members: set[tuple[str, str]] = set()
    for file in PACKAGE.rglob("*.py"):
        source = file.read_text(encoding="utf-8")
        found_paths, found_members = used_names(source)
        paths |= found_paths
        if "require(\"tensorrt\")" in source or "require_tensorrt()" in source:  # where TensorRT objects live
            members |= found_members
    return paths, members


@pytest.fixture(scope="module")
def listings() -> dict[str, dict]:
    if not all((LISTINGS / name).is_file() for name in VERSIONS):
        pytest.skip("TensorRT API listings not present at ../shared/tensorrt-api")
    return {name: json.loads((LISTINGS / name).read_text()) for name in VERSIONS}


def test_the_walker_finds_what_the_build_uses() -> None:
    paths, members = _package_usage()
    assert ("NetworkDefinitionCreationFlag", "STRONGLY_TYPED") in paths
    assert ("Logger", "WARNING") in paths
    assert ("Builder", "build_serialized_network") in members
    assert ("IExecutionContext", "execute_async_v3") in members


def test_every_trt_name_exists_in_both_versions(listings: dict[str, dict]) -> None:
    paths, members = _package_usage()
    missing = []
    for version, listing in listings.items():
        missing += [f"{version}: trt.{'.'.join(p)}" for p in sorted(paths) if not _known(listing, p)]
        missing += [f"{version}: {cls}.{name}" for cls, name in sorted(members)
                    if name not in listing["names"].get(cls, {}).get("attributes", {})]
    assert not missing, "TensorRT names not in the API listings:\n" + "\n".join(missing)


def test_removed_names_are_caught(listings: dict[str, dict]) -> None:
    listing = listings["tensorrt-11.4.0.106.json"]
    assert not _known(listing, ("BuilderFlag", "FP16"))  # removed in TensorRT 11
    assert not _known(listing, ("IInt8EntropyCalibrator2",))
    paths, members = used_names("def f(trt, builder):\n    trt.BuilderFlag.INT8\n    builder.platform_has_fast_fp16\n")
    assert ("BuilderFlag", "INT8") in paths and ("Builder", "platform_has_fast_fp16") in members
    assert "platform_has_fast_fp16" not in listing["names"]["Builder"]["attributes"]
