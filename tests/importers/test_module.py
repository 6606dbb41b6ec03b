"""import_module: any nn.Module -> a checkpoint that reloads without its class; the guide's examples run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fcn_deploy.cli import run
from fcn_deploy.errors import InputError

REPO_ROOT = Path(__file__).resolve().parents[2]


def _guide_text() -> str:
    return (REPO_ROOT / "docs" / "your-own-model.md").read_text(encoding="utf-8")


def _guide_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", _guide_text(), flags=re.S)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def test_import_fcn_deploy_does_not_import_torch() -> None:
    code = "import sys, fcn_deploy; assert callable(fcn_deploy.__getattr__); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_guide_python_example_runs_and_exports_without_the_class(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    (example,) = _guide_blocks("python")
    (tmp_path / "example.py").write_text(example)
    subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=_env(), check=True, timeout=300)
    assert (tmp_path / "checkpoints" / "tiny.pt").is_file()
    # a fresh process that never saw TinySegmenter exports and segments with it
    exporter = [sys.executable, "-m", "fcn_deploy.cli", "export", "checkpoints/tiny.pt", "--out", "export/tiny.onnx"]
    subprocess.run(exporter, cwd=tmp_path, env=_env(), check=True, timeout=300, capture_output=True)
    from fcn_deploy.contract import read_onnx_spec

    spec = read_onnx_spec(tmp_path / "export" / "tiny.onnx")
    assert spec.class_names == ("background", "road", "car") and spec.alignment == 2


@pytest.mark.slow
def test_guide_import_commands_run(tmp_path: Path, monkeypatch, d2l_state_dict: Path) -> None:
    torch = pytest.importorskip("torch")
    segmentation = pytest.importorskip("torchvision.models.segmentation")
    pytest.importorskip("onnxruntime")
    (commands,) = _guide_blocks("bash")
    monkeypatch.chdir(tmp_path)
    os.replace(d2l_state_dict, tmp_path / "d2l-fcn.pt")
    torch.manual_seed(0)
    torch.save(segmentation.fcn_resnet50(weights=None, weights_backbone=None, aux_loss=True).state_dict(),
               "fcn_resnet50.pth")
    lraspp = segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3).eval()

    class Plain(torch.nn.Module):
        def forward(self, x):
            return lraspp(x)["out"]

    dims = {"x": {2: torch.export.Dim("h", min=32, max=1024), 3: torch.export.Dim("w", min=32, max=1024)}}
    torch.onnx.export(Plain(), (torch.randn(1, 3, 64, 64),), "model.onnx", dynamo=True, dynamic_shapes=dims)
    Path("classes.json").write_text('{"classes": ["background", "road", "car"], "palette": [[0,0,0],[128,64,128],[0,0,142]]}')
    lines = [line.split("#", 1)[0].split() for line in commands.splitlines() if line.startswith("fcn-deploy ")]
    assert len(lines) == 3
    for argv in lines:
        assert run(argv[1:]) == 0, argv
    assert sorted(p.name for p in Path("checkpoints").iterdir()) == ["d2l-fcn32s.pt", "torchvision-fcn_resnet50.pt"]
    assert Path("export/model.fcn.onnx.json").is_file()


def test_output_of_another_size_is_refused(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from fcn_deploy.importers.module import import_module
    from fcn_deploy.spec import ModelSpec, ShapeRange

    spec = ModelSpec(arch="strided", shape_range=ShapeRange((1, 32, 32), (1, 64, 64), (2, 128, 128)))
    with pytest.raises(InputError, match=r"returns \(2, 21, 32, 32\), needed \(2, 21, 64, 64\)"):
        import_module(torch.nn.Conv2d(3, 21, 3, stride=2, padding=1), spec, tmp_path / "x.pt")
    wrong_classes = torch.nn.Conv2d(3, 5, 1)
    with pytest.raises(InputError, match="the classes differ"):
        import_module(wrong_classes, spec, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_checkpoint_loads_with_weights_only_and_rejects_unaligned_sizes(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from fcn_deploy.checkpoint import load_model
    from fcn_deploy.importers.module import import_module
    from fcn_deploy.spec import ModelSpec, ShapeRange

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.Conv2d(8, 21, 1)).eval()
    spec = ModelSpec(arch="plain", alignment=8, shape_range=ShapeRange((1, 32, 32), (1, 64, 64), (2, 128, 128)))
    path = import_module(net, spec, tmp_path / "plain.pt")
    torch.load(path, weights_only=True)
    model, info = load_model(path)
    x = torch.randn(2, 3, 40, 72)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-5) and info.spec.alignment == 8
        with pytest.raises(RuntimeError, match=r"shape\[2\] = 44 to be of the form 8\*"):  # the exported guard
            model(torch.randn(1, 3, 44, 72))


def test_a_module_with_nan_weights_is_refused(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from fcn_deploy.importers.module import import_module
    from fcn_deploy.spec import ModelSpec, ShapeRange

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1), torch.nn.BatchNorm2d(8), torch.nn.Conv2d(8, 21, 1)).eval()
    net[1].running_var[3] = float("nan")  # a buffer, not a parameter: still a weight of the model
    spec = ModelSpec(arch="plain", alignment=8, shape_range=ShapeRange((1, 32, 32), (1, 64, 64), (2, 128, 128)))
    with pytest.raises(InputError, match=r"non-finite weights .* in 1 tensor\(s\): 1.running_var"):
        import_module(net, spec, tmp_path / "plain.pt")
    assert not (tmp_path / "plain.pt").exists()
