"""Fixtures of the Ray tests: a private loopback-only network, a tiny ONNX model, a Ray head bound to 127.0.0.1.

Every Ray process runs inside one private network namespace holding only loopback where the machine allows it
(``unshare -n`` as root), else on 127.0.0.1 of the host; each node is stopped by its PID whatever happens.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def _private_network() -> subprocess.Popen | None:
    """A process holding a new network namespace with loopback up, or None where that is not allowed."""
    if shutil.which("unshare") is None or shutil.which("nsenter") is None or shutil.which("ip") is None:
        return None
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        return None
    holder = subprocess.Popen(["unshare", "-n", "sh", "-c", "ip link set lo up && echo up && exec sleep 3600"],
                              stdout=subprocess.PIPE, text=True)
    if holder.stdout is None or holder.stdout.readline().strip() != "up":
        holder.kill()
        holder.wait()
        return None
    return holder


@pytest.fixture(scope="module")
def netns_prefix() -> Iterator[tuple[str, ...]]:
    """The command prefix that runs a program in the private loopback-only network (empty where unavailable)."""
    pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'fcn-deploy[ray]')")
    holder = _private_network()
    try:
        yield ("nsenter", f"--net=/proc/{holder.pid}/ns/net") if holder is not None else ()
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()


@pytest.fixture(scope="session")
def ray_tmp(tmp_path_factory) -> Callable[[str], Path]:
    """Makes a folder under pytest's base temp dir for a Ray node's files, refusing one too long for Ray's socket
    paths (pytest's own base grows with its run counter: pass a short ``--basetemp``, as scripts/test.sh does)."""
    from fcn_deploy.cluster import MAX_TEMP_PARENT_CHARS

    def make(name: str) -> Path:
        folder = tmp_path_factory.mktemp(name)
        if len(str(folder)) > MAX_TEMP_PARENT_CHARS:
            pytest.fail(f"pytest's temp folder {folder} is longer than the {MAX_TEMP_PARENT_CHARS} characters Ray's "
                        f"socket paths leave: run pytest with --basetemp=$(mktemp -d /tmp/fcn.XXXXXX)", pytrace=False)
        return folder

    return make


@pytest.fixture(scope="module")
def short_tmp(ray_tmp) -> Path:
    """A folder short enough for Ray's socket paths, shared by the module's nodes."""
    return ray_tmp("r")


@pytest.fixture(scope="module")
def ray_head(netns_prefix, short_tmp):
    """A Ray head on 127.0.0.1 with 2 CPUs shared by the module's tests; stopped by PID at the end."""
    from fcn_deploy.cluster import short_temp_dir, start_node

    node = start_node(short_temp_dir(short_tmp), num_cpus=2, prefix=netns_prefix)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """A random-weight two-class fcn32s exported to ONNX (with its sidecar)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from fcn_deploy.checkpoint import Checkpoint, save_checkpoint
    from fcn_deploy.export import ExportConfig, export_onnx
    from fcn_deploy.model import build_model
    from fcn_deploy.spec import ModelSpec

    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    spec = ModelSpec(arch="fcn32s", num_classes=2, class_names=("background", "thing"))
    checkpoint = save_checkpoint(folder / "tiny.pt", build_model("fcn32s", 2), Checkpoint(spec=spec))
    return export_onnx(checkpoint, folder / "tiny.onnx", ExportConfig(verify=False, progress=False)).onnx_path
