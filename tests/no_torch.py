"""Runs fcn-deploy with the PyTorch stack blocked in every Python process it starts, and says who tried to import it.

A ``sitecustomize`` on PYTHONPATH refuses torch, torchvision and onnxscript as if they were not installed (also in
the processes a command starts: a Ray head and its workers, a Triton server's Python stubs), and logs each attempt.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMAND_TIMEOUT = 300  # seconds; a command that takes longer fails the test instead of hanging it

# refuses the PyTorch stack in every Python process that starts with it on PYTHONPATH, as if it were not installed,
# and logs each attempt: the module, who asked, and whether it was an import or only a look-up (find_spec)
_BLOCKER = '''
import os
import sys

_BLOCKED = {"torch", "torchvision", "onnxscript"}
_LOG = os.environ["FCN_DEPLOY_TEST_TORCH_LOG"]


class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] not in _BLOCKED:
            return None
        frame, kind = sys._getframe(1), "probe"  # importlib.util.find_spec asks without importing
        while frame is not None and frame.f_globals.get("__name__", "").startswith(("importlib", "_frozen_importlib")):
            kind = "import" if frame.f_code.co_name == "_find_and_load" else kind
            frame = frame.f_back
        importer = frame.f_globals.get("__name__", "?") if frame is not None else "?"
        with open(_LOG, "a") as log:
            log.write(f"{name} {importer} {kind}\\n")
        raise ModuleNotFoundError(f"No module named {name!r} (blocked by the runtime-install test)", name=name)


sys.meta_path.insert(0, _NoTorch())
with open(_LOG + ".processes", "a") as processes:  # every Python process that runs with the blocker
    processes.write(os.path.basename(sys.argv[0] if sys.argv else "?") + "\\n")
'''


class NoTorch:
    """Runs the CLI with the PyTorch stack blocked; ``attempts()`` lists (module, asker, kind) of every try."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        (folder / "site").mkdir(parents=True)
        (folder / "site" / "sitecustomize.py").write_text(_BLOCKER)
        self.log = folder / "torch-imports.log"
        self.log.write_text("")

    def variables(self) -> dict[str, str]:
        """The environment variables that put the blocker (and this checkout) into every Python process."""
        path = os.pathsep.join([str(self.folder / "site"), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
        return {"PYTHONPATH": path.rstrip(os.pathsep), "FCN_DEPLOY_TEST_TORCH_LOG": str(self.log)}

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **self.variables(), **extra}

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "fcn_deploy.cli", *args], env=self.env(**env), capture_output=True,
                              text=True, timeout=COMMAND_TIMEOUT)

    def processes(self) -> list[str]:
        """The script name of every Python process that started with the blocker."""
        path = Path(f"{self.log}.processes")
        return path.read_text().splitlines() if path.is_file() else []

    def attempts(self) -> list[tuple[str, ...]]:
        return [tuple(line.split(" ")) for line in self.log.read_text().splitlines()]

    def ours(self) -> list[tuple[str, str]]:
        """The imports of the PyTorch stack that fcn-deploy itself tried (look-ups that only ask are not counted)."""
        return [(module, asker) for module, asker, kind in self.attempts()
                if asker.startswith("fcn_deploy") and kind == "import"]
