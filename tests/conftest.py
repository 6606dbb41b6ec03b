"""Shared fixtures: the real VOC sample folder (skipped where absent) and tiny models in tmp_path."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
VOC_SAMPLE = REPO_ROOT.parent / "shared" / "voc-sample" / "VOCdevkit" / "VOC2012"


RUNTIME_ONLY = "FCN_DEPLOY_RUNTIME_ONLY"  # set by scripts/test.sh for its run in .venv-runtime (no PyTorch)


#: OpenVINO's telemetry package (used by NNCF and OpenVINO's converter) reads the user's choice from this file
#: under the home folder; "0" is its opt-out, the answer of ``opt_in_out --opt_out``
TELEMETRY_CONSENT = Path("intel") / "openvino_telemetry"


@pytest.fixture(scope="session", autouse=True)
def private_home(tmp_path_factory) -> Iterator[Path]:
    """A home folder of this test session for the tests and every process they start (set in the environment):
    per-user caches (OpenVINO's compiled models), Chromium's and GStreamer's files and OpenVINO's usage statistics
    land there, not in the user's home, and its telemetry choice is "no", so no test sends usage data anywhere."""
    folder = tmp_path_factory.mktemp("home")
    (folder / TELEMETRY_CONSENT).parent.mkdir()
    (folder / TELEMETRY_CONSENT).write_text("0")
    values = {"HOME": str(folder), "XDG_CACHE_HOME": str(folder / ".cache"), "XDG_CONFIG_HOME": str(folder / ".config")}
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    yield folder
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def pytest_ignore_collect(collection_path, config):
    """With FCN_DEPLOY_RUNTIME_ONLY=1 a test module that marks nothing 'runtime' is not even imported (many import
    torch at the top)."""
    if os.environ.get(RUNTIME_ONLY) != "1" or not (collection_path.name.startswith("test_")
                                                   and collection_path.suffix == ".py"):
        return None
    return "pytest.mark.runtime" not in collection_path.read_text(encoding="utf-8") or None


def pytest_collection_modifyitems(config, items):
    """With FCN_DEPLOY_RUNTIME_ONLY=1 only the tests marked 'runtime' run (the runtime install has no PyTorch)."""
    if os.environ.get(RUNTIME_ONLY) != "1":
        return
    kept = [item for item in items if item.get_closest_marker("runtime")]
    config.hook.pytest_deselected(items=[item for item in items if not item.get_closest_marker("runtime")])
    items[:] = kept


def _ctrl_c_as_in_a_terminal() -> None:
    """In the child before it runs: SIGINT back to its default, so Python turns it into KeyboardInterrupt."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def own_process(request) -> bool:
    """True in the test session's process, after the test has passed once more in a fresh pytest process.

    Tests that send real signals (Ctrl-C, SIGTERM) to their own process ask for it first and return at once when
    it is True: the signal then meets a process like a user's, not a session that has loaded every runtime. Like
    a user's in a terminal, that process takes Ctrl-C even where the suite was started with it ignored (a
    background job of a script): the CLI rightly keeps ignoring a signal ignored at its start.
    """
    marker = "FCN_DEPLOY_TEST_IN_OWN_PROCESS"
    if os.environ.get(marker) == request.node.nodeid:
        return False
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", request.node.nodeid],
        cwd=REPO_ROOT, env={**os.environ, marker: request.node.nodeid}, capture_output=True, text=True, timeout=300,
        preexec_fn=_ctrl_c_as_in_a_terminal,
    )
    assert done.returncode == 0, f"in its own process (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}"
    return True


@pytest.fixture
def voc_sample_dir() -> Path:
    """The eight real VOC2012 pairs beside the checkout; skip with the reason where they are absent."""
    if not (VOC_SAMPLE / "JPEGImages").is_dir():
        pytest.skip("real VOC sample not present at ../shared/voc-sample/VOCdevkit/VOC2012")
    return VOC_SAMPLE


# --- synthetic data and a briefly trained checkpoint, built once per session -----------------------

# The short CPU run the tests rely on, tuned so that fcn32s from random weights reaches val mIoU >= 0.6 on the
# synthetic set (d2l's lr 0.001 without momentum learns too slowly from scratch for a run this short).
SYNTH_NUM, SYNTH_SIZE, SYNTH_SEED = 64, (96, 128), 0
TRAIN_CROP = (64, 96)
SHORT_RUN_EPOCHS = 12


def short_run_config(data: Path, out_dir: Path):
    """TrainConfig of the short run: 12 epochs of 48 crops, batch 8, SGD lr 0.03 momentum 0.9, cosine schedule."""
    from fcn_deploy.train import TrainConfig

    return TrainConfig(
        data=data, arch="fcn32s", epochs=SHORT_RUN_EPOCHS, batch_size=8, lr=0.03, momentum=0.9, weight_decay=1e-4,
        lr_schedule="cosine", crop=TRAIN_CROP, out_dir=out_dir, seed=0, num_workers=0,
    )


@pytest.fixture(scope="session")
def synthetic_voc_dir(tmp_path_factory) -> Path:
    """A small synthetic dataset in the VOC2012 layout (64 pairs of 96×128: 48 train, 16 val). Do not modify it."""
    from fcn_deploy.data.synth import SynthConfig, synthesize

    root = tmp_path_factory.mktemp("synthetic") / "VOC2012"
    synthesize(SynthConfig(out=root, num=SYNTH_NUM, size=SYNTH_SIZE, seed=SYNTH_SEED))
    return root


@pytest.fixture
def tiny_train_voc(tmp_path) -> Path:
    """Eight synthetic 64×64 pairs (6 train, 2 val) in tmp_path: enough for one quick epoch at a 32×32 crop."""
    from fcn_deploy.data.synth import SynthConfig, synthesize

    return synthesize(SynthConfig(out=tmp_path / "VOC2012", num=8, size=(64, 64), seed=5)).root


@pytest.fixture(scope="session")
def trained_run(synthetic_voc_dir, tmp_path_factory):
    """The TrainResult of the short fcn32s CPU run on ``synthetic_voc_dir`` (crop 64×96)."""
    from fcn_deploy.train import train

    return train(short_run_config(synthetic_voc_dir, tmp_path_factory.mktemp("checkpoints")))


@pytest.fixture(scope="session")
def trained_checkpoint(trained_run) -> Path:
    """Path of the best checkpoint (fcn32s-best.pt, spec crop 64×96) of the short run. Do not modify it."""
    return trained_run.best_checkpoint


# --- ONNX exports for the precision, build and TensorRT tests (session-scoped: exports are slow) ------------


@pytest.fixture(scope="session")
def precision_voc_dir(synthetic_voc_dir) -> Path:
    """The synthetic VOC-layout folder the precision tests calibrate and check parity on."""
    return synthetic_voc_dir


@pytest.fixture(scope="session")
def precision_checkpoint(trained_checkpoint) -> Path:
    """A briefly trained fcn32s checkpoint (its predictions are not trivial, so parity means something)."""
    return trained_checkpoint


@pytest.fixture(scope="session")
def precision_onnx(precision_checkpoint: Path, tmp_path_factory) -> Path:
    """The FP32 ONNX export of the trained checkpoint (with its sidecar naming the checkpoint)."""
    from fcn_deploy.export import ExportConfig, export_onnx

    out = tmp_path_factory.mktemp("precision_onnx") / "fcn.onnx"
    return export_onnx(precision_checkpoint, out, ExportConfig(verify=False, progress=False)).onnx_path


@pytest.fixture(scope="session")
def random_onnx(tmp_path_factory) -> Path:
    """The FP32 export of a random-weight fcn32s (for tests of graphs and files, not of accuracy)."""
    import torch

    from fcn_deploy.checkpoint import Checkpoint, save_checkpoint
    from fcn_deploy.export import ExportConfig, export_onnx
    from fcn_deploy.model import build_model
    from fcn_deploy.spec import ModelSpec, ShapeRange

    folder = tmp_path_factory.mktemp("random_onnx")
    torch.manual_seed(0)
    spec = ModelSpec(arch="fcn32s", crop_size=TRAIN_CROP, shape_range=ShapeRange((1, 32, 32), (1, 64, 96), (4, 512, 512)))
    checkpoint = save_checkpoint(folder / "fcn32s.pt", build_model("fcn32s", 21), Checkpoint(spec=spec))
    return export_onnx(checkpoint, folder / "fcn.onnx", ExportConfig(verify=False, progress=False)).onnx_path


# --- TensorRT and cuda-python stand-ins (tests/gpu_standins.py) ------------------------------------


@pytest.fixture
def gpu_standins(monkeypatch):
    """Recording stand-ins for ``tensorrt`` and ``cuda.bindings.runtime``, installed for this test only."""
    from gpu_standins import StandIns

    return StandIns().install(monkeypatch)


# --- a tiny fcn-deploy ONNX (one 1×1 convolution) and a tiny VOC folder, for tests of files and rules -------


def _tiny_onnx(path: Path, spec=None) -> Path:
    """A 1×1 convolution to 21 classes with dynamic N, H, W and ``spec`` in its metadata."""
    import numpy as np

    onnx = pytest.importorskip("onnx")
    from fcn_deploy.contract import ONNX_METADATA_KEY
    from fcn_deploy.spec import ModelSpec, ShapeRange

    spec = spec or ModelSpec(arch="fcn32s", shape_range=ShapeRange((1, 32, 32), (1, 64, 64), (2, 128, 128)))
    helper, tensor = onnx.helper, onnx.TensorProto
    weight = helper.make_tensor("w", tensor.FLOAT, [21, 3, 1, 1], np.linspace(-1, 1, 63, dtype=np.float32))
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["logits"])], "tiny",
        [helper.make_tensor_value_info("image", tensor.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("logits", tensor.FLOAT, ["n", 21, "h", "w"])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    model.metadata_props.add(key=ONNX_METADATA_KEY, value=spec.to_json())
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def tiny_fcn_onnx(path: Path, num_classes: int = 21, class_names: tuple[str, ...] | None = None,
                  seed: int = 0) -> Path:
    """A tiny FCN written with the onnx helper API, no PyTorch: a 3×3 stride-2 convolution, ReLU, a 1×1 classifier
    and a bilinear 2× Resize back to the input size; random weights (``seed``) so labels vary across classes.

    Dynamic N, H, W; the spec in its metadata and a sidecar, like an export. The runtime-only suite runs on it.
    """
    import numpy as np

    onnx = pytest.importorskip("onnx")
    from fcn_deploy.contract import ONNX_METADATA_KEY, write_sidecar
    from fcn_deploy.spec import ModelSpec, ShapeRange

    spec = ModelSpec(arch="fcn32s", num_classes=num_classes,
                     shape_range=ShapeRange((1, 32, 32), (1, 64, 96), (4, 512, 512)),
                     **({"class_names": class_names} if class_names else {}))
    rng = np.random.default_rng(seed)
    helper, tensor, numpy_helper = onnx.helper, onnx.TensorProto, onnx.numpy_helper
    weights = {
        "body.weight": rng.normal(0, 0.5, (8, 3, 3, 3)), "body.bias": rng.normal(0, 0.1, 8),
        "classifier.weight": rng.normal(0, 0.5, (num_classes, 8, 1, 1)),
        "classifier.bias": rng.normal(0, 0.1, num_classes),
        "scales": np.array([1, 1, 2, 2]),
    }
    initializers = [numpy_helper.from_array(value.astype(np.float32), name) for name, value in weights.items()]
    nodes = [
        helper.make_node("Conv", ["image", "body.weight", "body.bias"], ["body"], kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["body"], ["features"]),
        helper.make_node("Conv", ["features", "classifier.weight", "classifier.bias"], ["scores"]),
        helper.make_node("Resize", ["scores", "", "scales"], ["logits"], mode="linear"),
    ]
    graph = helper.make_graph(
        nodes, "tiny_fcn", [helper.make_tensor_value_info("image", tensor.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("logits", tensor.FLOAT, ["n", num_classes, "h", "w"])], initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    model.metadata_props.add(key=ONNX_METADATA_KEY, value=spec.to_json())
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    write_sidecar(path, spec)
    return path


@pytest.fixture(scope="session")
def make_tiny_fcn():
    """``tiny_fcn_onnx`` itself: writes a tiny FCN ONNX (made without PyTorch) to a path."""
    return tiny_fcn_onnx


@pytest.fixture(scope="session")
def tiny_fcn(tmp_path_factory) -> Path:
    """A tiny 21-class FCN ONNX made without PyTorch (``tiny_fcn_onnx``), with its sidecar. Do not modify it."""
    return tiny_fcn_onnx(tmp_path_factory.mktemp("tiny_fcn") / "tiny.onnx")


def _tiny_voc(root: Path) -> Path:
    """A two-image VOC2012-layout folder (splits 'train' and 'val')."""
    import numpy as np
    from PIL import Image

    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
        Image.fromarray(rng.integers(0, 3, (64, 64), dtype=np.uint8), mode="L").save(
            root / "SegmentationClass" / f"{name}.png")
    for split in ("train", "val"):
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("a\nb\n")
    return root


@pytest.fixture
def tiny_onnx():
    """Writes a tiny fcn-deploy ONNX (a 1×1 convolution to 21 classes, the spec in its metadata) to a path."""
    return _tiny_onnx


@pytest.fixture(scope="session")
def tiny_voc():
    """Writes a two-image VOC2012-layout folder (splits 'train' and 'val') under a path."""
    return _tiny_voc


@pytest.fixture(scope="session")
def nncf():
    """The nncf module (with openvino); the tests that need it skip where the 'openvino' extra is not installed."""
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'fcn-deploy[openvino]')")
    return pytest.importorskip("nncf", reason="NNCF is not installed (pip install 'fcn-deploy[openvino]')")


def build_tiny_ir(folder: Path, precision: str = "f32") -> Path:
    """``fcn-deploy build --target openvino`` of the tiny FCN under ``folder`` (four 64×64 crops of the tiny VOC
    folder for its gate): the IR with its .bin and sidecar, as users get it."""
    from fcn_deploy.build_openvino import OpenVinoBuildConfig, build_openvino

    onnx = tiny_fcn_onnx(folder / "export" / "fcn.onnx")
    voc = _tiny_voc(folder / "voc")
    return build_openvino(onnx, OpenVinoBuildConfig(
        precision=precision, calib_data=voc, calib_num=4, calib_crop=(64, 64), engines_dir=folder / "engines",
        calibration_dir=folder / "calibration")).ir


@pytest.fixture(scope="session")
def tiny_ir(nncf, tmp_path_factory) -> Path:
    """An FP32 OpenVINO IR of the tiny FCN, built as ``build --target openvino`` builds it. Do not modify it."""
    return build_tiny_ir(tmp_path_factory.mktemp("tiny_ir"))


@pytest.fixture(scope="session")
def capi_toolchain() -> None:
    """gcc and a Python shared library to embed, which 'fcn-deploy capi build' needs; skip with the reason otherwise."""
    import shutil

    from fcn_deploy.capi.build import python_library
    from fcn_deploy.errors import MissingComponentError

    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    try:
        python_library()
    except MissingComponentError as exc:
        pytest.skip(f"no Python shared library to embed: {exc.message}")


@pytest.fixture
def no_torch(tmp_path):
    """Runs the CLI in fresh processes with torch, torchvision and onnxscript blocked (tests/no_torch.py)."""
    from no_torch import NoTorch

    return NoTorch(tmp_path / "no-torch")


def _hide_package(monkeypatch, package: str) -> None:
    """``package`` and its submodules cannot be imported through fcn_deploy.deps (as without its extra)."""
    import fcn_deploy.deps as deps

    real_import = deps.importlib.import_module

    def without(name: str, *args, **kwargs):
        if name.split(".")[0] == package:
            raise ImportError(f"No module named '{package}'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(deps.importlib, "import_module", without)


@pytest.fixture
def openvino_missing(monkeypatch) -> None:
    """``openvino`` cannot be imported through fcn_deploy.deps (as on a machine without the extra)."""
    _hide_package(monkeypatch, "openvino")


@pytest.fixture
def av_missing(monkeypatch) -> None:
    """``av`` (PyAV) cannot be imported through fcn_deploy.deps (as on a machine without the video extra)."""
    _hide_package(monkeypatch, "av")


@pytest.fixture
def tritonclient_missing(monkeypatch) -> None:
    """``tritonclient`` cannot be imported through fcn_deploy.deps (as on a machine without the serve extra)."""
    _hide_package(monkeypatch, "tritonclient")


@pytest.fixture(scope="session")
def class_count():
    """Spec changes for a model of ``count`` classes (names and palette colours to match), e.g. past uint8 labels."""
    def changes(count: int) -> dict:
        return dict(num_classes=count, class_names=tuple(f"c{i}" for i in range(count)),
                    palette=tuple((i % 256, 0, i // 256) for i in range(count)))

    return changes


@pytest.fixture
def parity_report():
    """Builds a parity report with passing figures, changed by keyword (for gates fed a stub report)."""
    from dataclasses import replace

    from fcn_deploy.parity.report import ParityReport

    passing = ParityReport(
        model="m.onnx", reference="r.pt", model_backend="onnxruntime", model_device="cpu", model_precision="int8",
        reference_backend="pytorch", reference_device="cpu", data_dir="d", split="val", num_images=1,
        num_pixels=100, max_abs_diff=0.1, max_abs_logit=10.0, argmax_agreement=0.999, model_miou=0.5,
        model_pixel_accuracy=0.9, reference_miou=0.5, reference_pixel_accuracy=0.9, delta_miou=0.0,
        model_seconds=1.0, reference_seconds=1.0, images=(),
    )
    return lambda **changes: replace(passing, **changes)


# --- files named like images that are not regular files -------------------------------------------


class SpecialFiles:
    """Named pipes and sockets named like images; a watcher records any pipe that something opened to read.

    Whoever opens a pipe to read it waits for a writer for ever; the watcher plays that writer and closes at once,
    so such a reader gets an empty file instead of hanging the test, and ``opened_pipes`` names the pipe.
    """

    def __init__(self) -> None:
        self.pipes: list[Path] = []
        self.opened_pipes: list[Path] = []
        self._sockets: list[socket.socket] = []
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="fifo-watcher", daemon=True)
        self._watcher.start()

    def pipe(self, path: Path) -> Path:
        os.mkfifo(path)
        self.pipes.append(path)
        return path

    def socket(self, path: Path) -> Path:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        self._sockets.append(listener)
        return path

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            for path in list(self.pipes):
                try:  # succeeds only while a reader has the pipe open (or waits in open)
                    descriptor = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                except OSError:
                    continue
                os.close(descriptor)
                self.opened_pipes.append(path)

    def close(self) -> None:
        self._stop.set()
        self._watcher.join()
        for listener in self._sockets:
            listener.close()


@pytest.fixture
def special_files() -> Iterator[SpecialFiles]:
    """Makes named pipes and Unix sockets; records the pipes something opened to read (and releases them)."""
    files = SpecialFiles()
    try:
        yield files
    finally:
        files.close()


# --- small videos written with PyAV (the video extra) ---------------------------------------------------


def video_pattern(index: int, height: int = 64, width: int = 96):
    """Frame ``index`` of the test videos: colours that depend on the position and move with the frame."""
    import numpy as np

    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([(cols * 3 + index * 10) % 256, (rows * 4 + index * 3) % 256, ((rows + cols) * 2) % 256],
                    axis=-1).astype(np.uint8)


def write_test_video(path: Path, frames: int = 12, rate=25, codec: str = "libx264", height: int = 64, width: int = 96,
                     container_format: str | None = None) -> Path:
    """A small video of ``video_pattern`` frames (``codec``: libx264, mjpeg, ffv1, ...), written with PyAV."""
    from fcn_deploy.video import write_video

    return write_video(path, (video_pattern(index, height, width) for index in range(frames)), rate, codec,
                       "yuvj420p" if codec == "mjpeg" else "yuv420p", container_format)


def damage_video_packet(path: Path, packet_index: int) -> Path:
    """Zero the payload of one packet of the video at ``path`` in place (its container stays intact)."""
    import av

    with av.open(str(path)) as container:
        packets = [(packet.pos, packet.size) for packet in container.demux(video=0) if packet.size]
    position, size = packets[packet_index]
    data = bytearray(path.read_bytes())
    data[position + 4 : position + size - 4] = bytes(size - 8)
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def av():
    """PyAV (the video extra); skip with the reason where it is not installed."""
    return pytest.importorskip("av", reason="PyAV (the video extra) is not installed")


@pytest.fixture
def make_video(av):
    """``write_test_video``: writes a small test video to a path (skips without PyAV)."""
    return write_test_video


@pytest.fixture
def damage_video(av):
    """``damage_video_packet``: zeroes one packet of a video in place, so that frame cannot be decoded."""
    return damage_video_packet
