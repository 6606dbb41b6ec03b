"""No command writes over what it reads: every output option of every command, pointed at each of its inputs
(written as given, relatively, through a link or a hard link), is refused with exit 1 before any work, and the
input keeps its bytes and its modification time; nothing else is written either.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer

from fcn_deploy.cli import app, run

INPUT = "which this command reads"


@dataclass(frozen=True)
class Case:
    """One command line whose output option names one of its inputs."""

    command: str  # the command path, e.g. 'import d2l'
    option: str  # the output option pointed at the input
    argv: tuple[str, ...]
    victim: str  # the input that must stay untouched (relative to the workspace)
    words: str = INPUT  # what the error says


def case(argv: str, option: str, victim: str, words: str = INPUT) -> Case:
    parts = tuple(argv.split())
    command = " ".join(parts[:2]) if parts[0] in ("import", "data", "triton", "capi") else parts[0]
    return Case(command, option, parts, victim, words)


IMG = "data/JPEGImages/a.jpg"
SPLIT = "data/ImageSets/Segmentation/train.txt"
CASES = [
    # train: --out-dir against --data, --backbone-weights and --resume
    case("train --data data --out-dir data/JPEGImages", "--out-dir", IMG),
    case("train --data data --backbone-weights runs/fcn32s-last.pt --out-dir runs", "--out-dir",
         "runs/fcn32s-last.pt"),
    case("train --data data --backbone-weights weights.pt --out-dir weights.pt", "--out-dir", "weights.pt",
         "exists and is not a folder"),
    case("train --data data --resume ckpt.pt --out-dir ckpt.pt", "--out-dir", "ckpt.pt", "exists and is not a folder"),
    # import: --out against the weights or model and the class file
    case("import d2l weights.pt --out weights.pt", "--out", "weights.pt"),
    case("import d2l weights.pt --classes classes.txt --out classes.txt", "--out", "classes.txt"),
    case("import torchvision fcn_resnet50 weights.pt --out weights.pt", "--out", "weights.pt"),
    case("import torchvision fcn_resnet50 weights.pt --classes classes.txt --out classes.txt", "--out",
         "classes.txt"),
    case("import onnx model.onnx --out model.onnx", "--out", "model.onnx"),
    case("import onnx model.onnx --classes classes.txt --out classes.txt", "--out", "classes.txt"),
    # export: --out against the checkpoint (also through a link and a hard link)
    case("export ckpt.pt --out ckpt.pt", "--out", "ckpt.pt"),
    case("export ckpt.pt --out link-to-ckpt.pt", "--out", "ckpt.pt"),
    case("export ckpt.pt --out hardlink-to-ckpt.pt", "--out", "ckpt.pt"),
    case("export old.onnx.data --out old.onnx", "--out", "old.onnx.data"),  # an older export's data is removed
    # calibrate: --out against the model, its sidecar and the dataset
    case("calibrate model.onnx --data data --out model.onnx", "--out", "model.onnx"),
    case("calibrate model.onnx --data data --out model.onnx.json", "--out", "model.onnx.json"),
    case(f"calibrate model.onnx --data data --out {IMG}", "--out", IMG),
    # build: --out and --timing-cache against the model, its sidecar, --reference and the datasets
    case("build model.onnx --fp32 --out model.onnx", "--out", "model.onnx"),
    case("build model.onnx --fp32 --out model.onnx.json", "--out", "model.onnx.json"),
    case("build model.onnx --fp16 --reference ckpt.pt --out ckpt.pt", "--out", "ckpt.pt"),
    case("build model.onnx --fp32 --timing-cache model.onnx", "--timing-cache", "model.onnx"),
    case(f"build model.onnx --int8 --calib-data data --timing-cache {SPLIT}", "--timing-cache", SPLIT),
    case("build model.onnx --fp16 --parity-data data --out data/SegmentationClass/a.png", "--out",
         "data/SegmentationClass/a.png"),
    # infer: --out and --summary against the model, its sidecar, the folder and an image (also on Ray)
    case("infer model.onnx images --out model.onnx", "--out", "model.onnx"),
    case("infer model.onnx images --out images", "--out", "images/a.png"),
    case("infer model.onnx images --out masks --summary model.onnx", "--summary", "model.onnx"),
    case("infer model.onnx images --out masks --summary model.onnx.json", "--summary", "model.onnx.json"),
    case("infer model.onnx images --out masks --summary images/a.png", "--summary", "images/a.png"),
    case("infer model.onnx images --out masks --summary link-to-image.json", "--summary", "images/a.png"),
    case("infer model.onnx images --ray local --out masks --summary images/a.png", "--summary", "images/a.png"),
    # parity: --report and --out-dir against the model, its sidecar and the reference
    case("parity model.onnx --reference ckpt.pt --data data --report model.onnx.json", "--report", "model.onnx.json"),
    case("parity model.onnx --reference ckpt.pt --data data --report ckpt.pt", "--report", "ckpt.pt", "must end in"),
    case("parity model.onnx --reference ckpt.pt --data data --out-dir model.onnx", "--out-dir", "model.onnx",
         "is a file, not a folder"),
    # bench: --json against each model, a sidecar and the peer images
    case("bench model.onnx --json model.onnx", "--json", "model.onnx"),
    case("bench model.onnx --json model.onnx.json", "--json", "model.onnx.json"),
    case("bench ckpt.pt model.onnx --json ckpt.pt", "--json", "ckpt.pt"),
    case("bench ckpt.pt --json ./link-to-ckpt.pt", "--json", "ckpt.pt"),
    case("bench ckpt.pt model.onnx --peers --peer-images images --json images/a.png", "--json", "images/a.png"),
    # triton export: --out (and the model folders it replaces) against the model and its sidecar
    case("triton export model.onnx --out model.onnx", "--out", "model.onnx"),
    case("triton export model.onnx --out model.onnx.json", "--out", "model.onnx.json"),
    case("triton export models/fcn/1/model.onnx --out models --overwrite", "--out", "models/fcn/1/model.onnx",
         "holds the model"),
    # serve: --workspace (made, then deleted as a whole) against the model, its folder and the token file
    case("serve model.onnx --workspace model.onnx", "--workspace", "model.onnx"),
    case("serve models/fcn/1/model.onnx --workspace models", "--workspace", "models/fcn/1/model.onnx",
         "holds the model"),
    case("serve model.onnx --token-file token.txt --workspace token.txt", "--workspace", "token.txt"),
    # client: --out and --summary against the image folder and an image
    case("client 127.0.0.1:1 images --out images", "--out", "images/a.png"),
    case("client 127.0.0.1:1 images --out images/a.png", "--out", "images/a.png"),
    case("client 127.0.0.1:1 images --out masks --summary images/a.png", "--summary", "images/a.png"),
    case("client 127.0.0.1:1 images/a.png images/b.png --out masks --summary images/b.png", "--summary",
         "images/b.png"),
]

# commands with no output that could be an input: what they read and write says why
NOTHING_TO_PROTECT = {
    "data synth": "reads nothing: it only writes the dataset folder",
    "data check": "writes nothing",
    "capi build": "reads only the package's own sources; --out receives the library, header and pkg-config file",
}


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_onnx, tiny_voc) -> Path:
    """Every input the cases name, in the working folder (arbitrary bytes where no command gets to read them)."""
    monkeypatch.chdir(tmp_path)
    tiny_onnx(Path("model.onnx"))
    Path("model.onnx.json").write_text('{"stand-in": "sidecar"}\n')
    tiny_onnx(Path("models/fcn/1/model.onnx"))
    tiny_voc(Path("data"))
    for name, data in (("ckpt.pt", b"checkpoint"), ("old.onnx.data", b"checkpoint"), ("weights.pt", b"weights"),
                       ("runs/fcn32s-last.pt", b"weights"), ("classes.txt", b"background\ncat\n"),
                       ("token.txt", b"a-long-enough-admin-token\n")):
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_bytes(data)
    Path("images").mkdir()
    for name in ("a.png", "b.png"):
        Path("images", name).write_bytes(Path("data/SegmentationClass/a.png").read_bytes())
    Path("link-to-ckpt.pt").symlink_to("ckpt.pt")
    Path("link-to-image.json").symlink_to("images/a.png")
    os.link("ckpt.pt", "hardlink-to-ckpt.pt")
    return tmp_path


def snapshot(root: Path) -> dict[str, tuple[bytes, int] | str]:
    """Every path under ``root``: files with their bytes and mtime, folders and links by kind."""
    state: dict[str, tuple[bytes, int] | str] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            state[key] = f"link to {os.readlink(path)}"
        elif path.is_dir():
            state[key] = "folder"
        else:
            state[key] = (path.read_bytes(), path.stat().st_mtime_ns)
    return state


@pytest.mark.parametrize("item", CASES, ids=[" ".join(c.argv) for c in CASES])
def test_an_output_pointed_at_an_input_is_refused_and_the_input_kept(workspace: Path, item: Case, capsys) -> None:
    if "--ray" in item.argv:
        pytest.importorskip("ray")
    before = snapshot(workspace)
    assert run(list(item.argv)) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "fix:" in err and item.words in err, err
    assert Path(item.victim).name in err or Path(item.victim).parent.name in err, err
    assert snapshot(workspace) == before  # the input intact, and nothing written at all


def _commands(group: typer.Typer, prefix: str = "") -> set[str]:
    """Every command path of the CLI ('train', 'import d2l', ...)."""
    found = {f"{prefix}{c.name or c.callback.__name__}".strip() for c in group.registered_commands}
    for sub in group.registered_groups:
        found |= _commands(sub.typer_instance, f"{prefix}{sub.name} ")
    return found


def test_every_command_is_covered() -> None:
    covered = {c.command for c in CASES} | set(NOTHING_TO_PROTECT)
    assert _commands(app) == covered


OUTPUT_OPTIONS = {
    "train": {"--out-dir"}, "import d2l": {"--out"}, "import torchvision": {"--out"}, "import onnx": {"--out"},
    "export": {"--out"}, "calibrate": {"--out"}, "build": {"--out", "--timing-cache"},
    "infer": {"--out", "--summary"}, "parity": {"--report", "--out-dir"}, "bench": {"--json"},
    "triton export": {"--out"}, "serve": {"--workspace"}, "client": {"--out", "--summary"},
}


def test_every_output_option_is_pointed_at_an_input() -> None:
    options: dict[str, set[str]] = {}
    for item in CASES:
        options.setdefault(item.command, set()).add(item.option)
    assert options == OUTPUT_OPTIONS


def test_import_d2l_refuses_weights_at_its_default_output(tmp_path: Path, monkeypatch, capsys) -> None:
    torch = pytest.importorskip("torch")
    from fcn_deploy.model import build_model

    monkeypatch.chdir(tmp_path)
    weights = Path("checkpoints/d2l-fcn32s.pt")  # where the import of an fcn32s state dict writes by default
    weights.parent.mkdir()
    torch.save(build_model("fcn32s", 21).state_dict(), weights)
    before = snapshot(tmp_path)
    assert run(["import", "d2l", str(weights)]) == 1
    assert f"the checkpoint {weights} is the weights" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_client_refuses_an_out_under_a_file_before_any_request(workspace: Path, capsys) -> None:
    before = snapshot(workspace)
    assert run(["client", "127.0.0.1:1", "images", "--out", "ckpt.pt/masks"]) == 1
    assert "ckpt.pt is a file, not a folder" in capsys.readouterr().err
    assert snapshot(workspace) == before


def test_serve_refuses_a_workspace_that_exists(workspace: Path, capsys) -> None:
    Path("busy").mkdir()
    assert run(["serve", "model.onnx", "--workspace", "busy"]) == 1
    assert "--workspace busy already exists" in capsys.readouterr().err
