"""Every TensorRT and CUDA runtime name the package uses exists in the APIs it runs against.

TensorRT cannot be installed here, so the source is walked with ``ast``: attributes of the ``trt`` module
(nested ones such as ``trt.Logger.WARNING`` included) and members used on the builder, network, parser,
config, profile, engine, context and runtime objects are looked up in the published TensorRT 10.16 and 11.4
API listings. The ``cudart`` names (attributes, and names passed as strings to ``getattr``/``cuda_call``)
are looked up in the installed ``cuda.bindings.runtime``. A variable that holds a TensorRT object must be
mapped to its class (checked against the listed return types), so no object's members escape the check.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.runtime  # runs in the runtime install (no PyTorch) too

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = REPO_ROOT / "fcn_deploy"
LISTINGS = REPO_ROOT.parent / "shared" / "tensorrt-api"
VERSIONS = ("tensorrt-10.16.1.11.json", "tensorrt-11.4.0.106.json")
# module dunders the introspection skipped by design (the listings cover public names only)
MODULE_DUNDERS = {"__version__"}
# variable (or self attribute) -> TensorRT class of the object it holds
OBJECT_CLASSES = {
    "builder": "Builder", "network": "INetworkDefinition", "parser": "OnnxParser", "config_trt": "IBuilderConfig",
    "optimization": "IOptimizationProfile", "cache": "ITimingCache", "timing": "ITimingCache", "plan": "IHostMemory", "blob": "IHostMemory", "error": "ParserError",
    "self._engine": "ICudaEngine", "self._context": "IExecutionContext", "context": "IExecutionContext",
    "self._runtime": "Runtime", "self._logger": "Logger", "logger": "Logger",
}
TRT_ALIASES = {"trt", "self._trt"}
CUDART_ALIASES = {"cudart", "self.cudart", "self._cudart"}
# variable -> cuda.bindings.runtime class of the object it holds
CUDA_OBJECT_CLASSES = {"props": "cudaDeviceProp"}
CUDA_NAME = re.compile(r"cuda[A-Z]\w*")  # a cudart function named in a string (getattr, error messages)


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


def _paths_under(dotted: str, aliases: set[str]) -> tuple[str, ...] | None:
    """The attribute path of ``dotted`` below one of ``aliases`` ('trt.Logger.WARNING' -> ('Logger', 'WARNING'))."""
    for alias in aliases:
        if dotted.startswith(alias + "."):
            return tuple(dotted[len(alias) + 1:].split("."))
    return None


def _attribute_uses(
    source: str, aliases: set[str], object_classes: dict[str, str]
) -> tuple[set[tuple[str, ...]], set[tuple[str, str]]]:
    """(attribute paths under a module named by ``aliases``, (class, member) pairs used on its objects)."""
    module_paths: set[tuple[str, ...]] = set()
    members: set[tuple[str, str]] = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute) or (dotted := _dotted(node)) is None:
            continue
        path = _paths_under(dotted, aliases)
        if path is not None:
            module_paths.add(path)
        owner = _dotted(node.value)
        if owner in object_classes:
            members.add((object_classes[owner], node.attr))
    return module_paths, members


def used_names(source: str) -> tuple[set[tuple[str, ...]], set[tuple[str, str]]]:
    """(attribute paths under the trt module, (class, member) pairs used on TensorRT objects)."""
    return _attribute_uses(source, TRT_ALIASES, OBJECT_CLASSES)


def used_cuda_names(source: str) -> set[tuple[str, ...]]:
    """Paths under cuda.bindings.runtime: attributes of ``cudart``, members of its objects, names in strings."""
    paths, members = _attribute_uses(source, CUDART_ALIASES, CUDA_OBJECT_CLASSES)
    strings = {(node.value,) for node in ast.walk(ast.parse(source))
               if isinstance(node, ast.Constant) and isinstance(node.value, str) and CUDA_NAME.fullmatch(node.value)}
    return paths | members | strings


def object_assignments(source: str) -> list[tuple[str | None, str, str]]:
    """(variable, owner, attribute) for each variable assigned a TensorRT call's result or a bare module attribute.

    A bare attribute (``kind = cudart.cudaMemcpyKind``) makes an alias the walker cannot follow.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
            continue
        value = node.value.func if isinstance(node.value, ast.Call) else node.value
        if not isinstance(value, ast.Attribute):
            continue
        owner = _dotted(value.value)
        is_call = isinstance(node.value, ast.Call)
        if not (owner in TRT_ALIASES or (is_call and owner in OBJECT_CLASSES)
                or (not is_call and owner in CUDART_ALIASES)):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            for leaf in target.elts if isinstance(target, ast.Tuple) else [target]:
                found.append((_dotted(leaf) if is_call else None, owner, value.attr))
    return found


def _attribute(names: dict, entry: dict, part: str) -> dict | None:
    """The listing entry of ``entry.part``, following ``inherited_from`` to the defining class."""
    attribute = entry.get("attributes", {}).get(part)
    if attribute is not None and "inherited_from" in attribute:
        attribute = names.get(attribute["inherited_from"], {}).get("attributes", {}).get(part)
    return attribute


def _known(listing: dict, path: tuple[str, ...]) -> bool:
    """True when ``trt.<path>`` exists in the listing (nested classes, enum members, inherited attributes)."""
    names = listing["names"]
    if path[0] in MODULE_DUNDERS and len(path) == 1:
        return True
    entry = names.get(path[0])
    for part in path[1:]:
        if entry is None:
            return False
        if part in entry.get("members", ()):  # an enum member has the enum's own attributes (name, value)
            entry = {"attributes": entry.get("attributes", {})}
            continue
        entry = _attribute(names, entry, part)
    return entry is not None


def _return_types(listing: dict, cls: str, method: str) -> set[str]:
    """What ``cls.method`` returns, per the pybind11 signatures of the listing."""
    attribute = _attribute(listing["names"], listing["names"].get(cls, {}), method) or {}
    return {sig.rsplit(" -> ", 1)[-1].rsplit(".", 1)[-1] for sig in attribute.get("signatures", ())}


def _sources() -> list[str]:
    return [file.read_text(encoding="utf-8") for file in sorted(PACKAGE.rglob("*.py"))]


def _holds_trt_objects(source: str) -> bool:
    """Whether a module gets the tensorrt module (only there do names like ``builder`` mean TensorRT objects)."""
    return 'require("tensorrt")' in source or "require_tensorrt()" in source


def _package_usage() -> tuple[set[tuple[str, ...]], set[tuple[str, str]]]:
    paths: set[tuple[str, ...]] = set()
    members: set[tuple[str, str]] = set()
    for source in _sources():
        found_paths, found_members = used_names(source)
        paths |= found_paths
        if _holds_trt_objects(source):
            members |= found_members
    return paths, members


def _package_cuda_usage() -> set[tuple[str, ...]]:
    return {path for source in _sources() if "cuda.bindings.runtime" in source for path in used_cuda_names(source)}


@pytest.fixture(scope="module")
def listings() -> dict[str, dict]:
    if not all((LISTINGS / name).is_file() for name in VERSIONS):
        pytest.skip("TensorRT API listings not present at ../shared/tensorrt-api")
    return {name: json.loads((LISTINGS / name).read_text()) for name in VERSIONS}


def test_the_walker_finds_what_the_build_uses() -> None:
    paths, members = _package_usage()
    assert ("NetworkDefinitionCreationFlag", "STRONGLY_TYPED") in paths
    assert ("Logger", "WARNING") in paths
    assert {("TensorIOMode", "OUTPUT"), ("MemoryPoolType", "WORKSPACE"), ("nptype",), ("Dims",)} <= paths
    assert ("Builder", "build_serialized_network") in members
    assert ("IExecutionContext", "execute_async_v3") in members
    assert {("OnnxParser", "get_error"), ("ParserError", "desc"), ("IOptimizationProfile", "set_shape"),
            ("ITimingCache", "serialize"), ("Runtime", "deserialize_cuda_engine"),
            ("ICudaEngine", "get_tensor_profile_shape"), ("IBuilderConfig", "create_timing_cache")} <= members
    cuda = _package_cuda_usage()
    assert {("cudaMemcpyAsync",), ("cudaMemcpyKind", "cudaMemcpyHostToDevice"), ("cudaError_t", "cudaSuccess"),
            ("cudaMalloc",), ("cudaFreeHost",), ("cudaDeviceProp", "major")} <= cuda


def test_every_trt_name_exists_in_both_versions(listings: dict[str, dict]) -> None:
    paths, members = _package_usage()
    missing = []
    for version, listing in listings.items():
        missing += [f"{version}: trt.{'.'.join(p)}" for p in sorted(paths) if not _known(listing, p)]
        missing += [f"{version}: {cls}.{name}" for cls, name in sorted(members) if not _known(listing, (cls, name))]
    assert not missing, "TensorRT names not in the API listings:\n" + "\n".join(missing)


def test_every_tensorrt_object_is_mapped_to_its_class(listings: dict[str, dict]) -> None:
    problems = []
    for source in filter(_holds_trt_objects, _sources()):
        for variable, owner, attribute in object_assignments(source):
            if variable is None:
                problems.append(f"{attribute} of {owner} is aliased: use {owner}.{attribute} where it is needed")
            elif variable not in OBJECT_CLASSES:
                problems.append(f"{variable} = {owner}.{attribute}(...) holds a TensorRT object: add it to OBJECT_CLASSES")
            elif owner in TRT_ALIASES:
                if attribute != OBJECT_CLASSES[variable]:
                    problems.append(f"{variable} is a trt.{attribute}, mapped to {OBJECT_CLASSES[variable]}")
            else:
                for version, listing in listings.items():
                    returned = _return_types(listing, OBJECT_CLASSES[owner], attribute)
                    if returned != {OBJECT_CLASSES[variable]}:
                        problems.append(f"{version}: {variable} = {owner}.{attribute}() returns {sorted(returned)}, "
                                        f"mapped to {OBJECT_CLASSES[variable]}")
    assert not problems, "\n".join(problems)


def test_every_cudart_name_exists() -> None:
    cudart = pytest.importorskip("cuda.bindings.runtime")
    missing = []
    for path in sorted(_package_cuda_usage()):
        target = cudart
        for part in path:
            target = getattr(target, part, None)
        if target is None:
            missing.append("cudart." + ".".join(path))
    assert not missing, "CUDA runtime names not in cuda.bindings.runtime:\n" + "\n".join(missing)


def test_removed_names_are_caught(listings: dict[str, dict]) -> None:
    listing = listings["tensorrt-11.4.0.106.json"]
    assert not _known(listing, ("BuilderFlag", "FP16"))  # removed in TensorRT 11
    assert not _known(listing, ("IInt8EntropyCalibrator2",))
    paths, members = used_names("def f(trt, builder):\n    trt.BuilderFlag.INT8\n    builder.platform_has_fast_fp16\n")
    assert ("BuilderFlag", "INT8") in paths and ("Builder", "platform_has_fast_fp16") in members
    assert "platform_has_fast_fp16" not in listing["names"]["Builder"]["attributes"]
    assert not _known(listing, ("Builder", "platform_has_fast_fp16"))


def test_nested_inherited_and_unmapped_names_are_resolved(listings: dict[str, dict]) -> None:
    listing = listings["tensorrt-11.4.0.106.json"]
    assert _known(listing, ("Logger", "Severity", "WARNING", "value"))  # a nested enum's member
    assert _known(listing, ("Dims4", "MAX_DIMS"))  # inherited from Dims
    assert not _known(listing, ("Logger", "Severity", "LOUD"))
    assert not _known(listing, ("Dims4", "NO_SUCH_NAME"))
    source = ("def f(trt, builder, cudart):\n    shiny = builder.create_network(0)\n"
              "    builder = trt.Builder(None)\n    kind = cudart.cudaMemcpyKind\n")
    assert object_assignments(source) == [("shiny", "builder", "create_network"), ("builder", "trt", "Builder"),
                                          (None, "cudart", "cudaMemcpyKind")]
    assert _return_types(listing, "Builder", "create_network") == {"INetworkDefinition"}


def test_the_standins_offer_only_listed_names(listings: dict[str, dict]) -> None:
    """The recording stand-ins (tests/gpu_standins.py) accept no TensorRT or cudart name the real APIs lack."""
    import enum

    from gpu_standins import StandIns, public_names, tensorrt_classes

    standins = StandIns()
    module = standins.tensorrt
    offered: set[tuple[str, ...]] = set()
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        offered.add((name,))
        if isinstance(value, type) and issubclass(value, enum.Enum):
            offered |= {(name, member) for member in value.__members__}
    for listed, cls in tensorrt_classes(module).items():
        offered |= {(listed, member) for member in public_names(cls)}
    assert ("IBuilderConfig", "set_timing_cache") in offered and ("Logger", "WARNING") in offered
    missing = [f"{version}: trt.{'.'.join(path)}" for version, listing in listings.items()
               for path in sorted(offered) if not _known(listing, path)]
    assert not missing, "stand-in names not in the TensorRT API listings:\n" + "\n".join(missing)

    cudart = pytest.importorskip("cuda.bindings.runtime")
    unknown = []
    for name, value in vars(standins.cudart).items():
        if name.startswith("_"):
            continue
        real = getattr(cudart, name, None)
        members = value.__members__ if isinstance(value, type) and issubclass(value, enum.Enum) else {}
        if name == "cudaDeviceProp":  # its fields are instance attributes
            members, real = vars(value()), real()
        unknown += [f"cudart.{name}"] if real is None else [f"cudart.{name}.{m}" for m in members
                                                            if not hasattr(real, m)]
    unknown += [] if hasattr(cudart.cudaStream_t, "getPtr") else ["cudart.cudaStream_t.getPtr"]
    utils = pytest.importorskip("cuda.bindings.utils")
    unknown += [f"utils.{n}" for n in vars(standins.utils) if not n.startswith("_") and not hasattr(utils, n)]
    assert not unknown, "stand-in names not in cuda.bindings:\n" + "\n".join(unknown)
