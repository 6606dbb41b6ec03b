"""The package's import structure: every import points down the declared layer order, with no cycle, and
every module imports (and ``fcn-deploy --help`` runs) without the heavy runtimes installed."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.runtime  # runs in the runtime install (no PyTorch) too

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "fcn_deploy"

# Lowest first. A module may import modules of its own layer or of lower layers, never of a higher one. A name
# stands for the module and everything below it (``runtime`` covers ``runtime.base``); the longest name wins.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("fcn_deploy", "errors", "fileio", "palette", "progress", "interrupts", "heap"),  # ground floor
    ("deps",),
    ("spec", "devices", "imageio", "tiffio", "metrics", "flops"),
    ("contract",),  # an artifact and its spec: ONNX metadata, sidecars, spec-vs-graph checks
    ("data", "model", "upsampler", "program"),
    ("checkpoint",),
    ("workspace", "train"),
    ("export",),
    ("importers",),
    ("precision",),
    ("runtime",),
    ("tiling",),
    ("parity",),  # runs artifacts through the runtime; its precision gate runs ONNX Runtime
    ("build", "build_openvino"),  # precision ONNX or IR -> parity gate -> engine, so it sits above both
    ("segmenter",),
    ("infer", "video", "bench", "capi", "serving", "cluster"),
    ("cli",),
)
# imported only inside the functions that need them, so that the CLI and every module load without them
HEAVY_MODULES = ("torch", "torchvision", "onnx", "onnxscript", "onnxruntime", "tensorrt", "cuda", "openvino", "ray",
                 "pytriton", "tritonclient", "av")


def module_name(path: Path) -> str:
    """``fcn_deploy/runtime/base.py`` -> ``fcn_deploy.runtime.base`` (packages by their ``__init__``)."""
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports anywhere in its file (functions included), resolved to modules."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "fcn_deploy"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            if base.split(".")[0] != "fcn_deploy":
                continue
            for alias in node.names:  # 'from pkg import submodule' imports the submodule
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return found - {name}


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: imports_of(name, path, set(modules)) for name, path in modules.items()}


def layer_of(module: str) -> int:
    """The layer index of a package module; KeyError for a module the table does not place."""
    relative = module.removeprefix("fcn_deploy").lstrip(".") or "fcn_deploy"
    best, best_len = None, -1
    for index, names in enumerate(LAYERS):
        for entry in names:
            if (relative == entry or relative.startswith(entry + ".")) and len(entry) > best_len:
                best, best_len = index, len(entry)
    if best is None:
        raise KeyError(module)
    return best


# the package's lazy top-level names (``fcn_deploy.import_module``): imported on first attribute access only
LAZY_FACADE = {("fcn_deploy", "fcn_deploy.importers.module")}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import from a lower layer to a higher one, as readable lines."""
    return [f"{source} (layer {layer_of(source)}) imports {target} (layer {layer_of(target)})"
            for source, targets in sorted(graph.items()) for target in sorted(targets)
            if layer_of(target) > layer_of(source) and (source, target) not in LAZY_FACADE]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer() -> None:
    unplaced = []
    for name in package_modules():
        try:
            layer_of(name)
        except KeyError:
            unplaced.append(name)
    assert not unplaced, f"modules missing from LAYERS in {Path(__file__).name}: {unplaced}"


def test_imports_point_down_the_layers() -> None:
    problems = upward_imports(import_graph())
    assert not problems, "imports against the layer order:\n" + "\n".join(problems)


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_the_checks_catch_an_upward_import_and_a_cycle() -> None:
    graph = {"fcn_deploy.spec": {"fcn_deploy.runtime.base"}, "fcn_deploy.runtime.base": {"fcn_deploy.spec"}}
    assert upward_imports(graph) == ["fcn_deploy.spec (layer 2) imports fcn_deploy.runtime.base (layer 10)"]
    assert cycles(graph) == [["fcn_deploy.runtime.base", "fcn_deploy.spec"]]


def test_relative_and_submodule_imports_resolve(tmp_path: Path) -> None:
    source = PACKAGE_DIR / "parity" / "gate.py"
    found = imports_of("fcn_deploy.parity.gate", source, set(package_modules()))
    assert {"fcn_deploy.parity.run", "fcn_deploy.contract", "fcn_deploy.precision.fp16"} <= found


_BLOCKED_IMPORT_RUN = """
import importlib, pkgutil, sys
blocked = set(sys.argv[1].split(","))

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"blocked for the test: {name}")
        return None

sys.meta_path.insert(0, Block())
import fcn_deploy
for info in pkgutil.walk_packages(fcn_deploy.__path__, "fcn_deploy."):
    if info.name.endswith("__main__"):
        continue
    importlib.import_module(info.name)
loaded = sorted(name for name in sys.modules if name.split(".")[0] in blocked)
assert not loaded, loaded
from fcn_deploy.cli import run
code = run(["--help"])
print("exit", code)
"""


def test_every_module_and_the_help_load_without_heavy_packages() -> None:
    done = subprocess.run([sys.executable, "-c", _BLOCKED_IMPORT_RUN, ",".join(HEAVY_MODULES)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Usage: fcn-deploy" in done.stdout and "exit 0" in done.stdout


@pytest.mark.parametrize("command", ["infer", "export", "bench", "build"])
def test_a_missing_runtime_names_what_to_install(command: str, tmp_path: Path) -> None:
    """With torch and onnxruntime blocked, a command that needs them says which package to install (exit 2)."""
    (tmp_path / "images").mkdir()
    model = tmp_path / "fcn.onnx"
    model.write_bytes(b"not a model")
    argv = {"infer": ["infer", str(model), str(tmp_path / "images"), "--out", str(tmp_path / "out")],
            "export": ["export", str(tmp_path / "missing.pt")],
            "bench": ["bench", str(model), "--no-rss"],
            "build": ["build", str(model), "--fp16"]}[command]
    code = _BLOCKED_IMPORT_RUN.split("import fcn_deploy")[0] + (
        "from fcn_deploy.cli import run\nsys.exit(run(sys.argv[2:]))\n")
    done = subprocess.run([sys.executable, "-c", code, ",".join(HEAVY_MODULES), *argv],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "error: the Python module" in done.stderr and "fix: pip install" in done.stderr
    assert "Traceback" not in done.stderr
