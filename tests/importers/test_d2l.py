"""d2l-notebook state dicts: exact mapping onto fcn32s, the full import -> export -> infer path, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fcn_deploy.cli import run
from fcn_deploy.errors import InputError

D2L_CROP = (0, 0, 320, 480)  # d2l's prediction section: top, left, height, width


def test_d2l_keys_map_onto_fcn32s_exactly(tmp_path: Path, d2l_net, d2l_state_dict: Path) -> None:
    torch = pytest.importorskip("torch")
    from fcn_deploy.checkpoint import load_model
    from fcn_deploy.importers.d2l import import_d2l

    path, layout = import_d2l(d2l_state_dict, tmp_path / "ck.pt")
    assert layout.startswith("d2l ResNet-18")
    model, info = load_model(path)
    assert info.spec.arch == "fcn32s" and info.spec.num_classes == 21 and info.spec.alignment == 32
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(model(x), d2l_net(x))


def test_d2l_with_other_class_count_and_class_file(tmp_path: Path, d2l_net_factory) -> None:
    torch = pytest.importorskip("torch")
    from fcn_deploy.checkpoint import read_checkpoint
    from fcn_deploy.importers.d2l import import_d2l

    weights = tmp_path / "w.pt"
    torch.save(d2l_net_factory(num_classes=3).state_dict(), weights)
    (tmp_path / "classes.txt").write_text("sky #0000ff\nroad #808080\ncar #ff0000\n")
    path, _ = import_d2l(weights, tmp_path / "ck.pt", classes=tmp_path / "classes.txt")
    spec = read_checkpoint(path)[0].spec
    assert spec.class_names == ("sky", "road", "car") and spec.palette == ((0, 0, 255), (128, 128, 128), (255, 0, 0))


def _d2l_predict(net, image_chw):
    """d2l's predict: normalise with ImageNet mean/std, then net(X).argmax(dim=1)."""
    import torch
    import torchvision

    normalize = torchvision.transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    X = normalize(image_chw.float() / 255).unsqueeze(0)
    with torch.no_grad():
        return net(X).argmax(dim=1).reshape(X.shape[2], X.shape[3])


@pytest.mark.slow
def test_import_export_infer_equals_d2l_predict(tmp_path: Path, monkeypatch, voc_sample_dir: Path, d2l_net,
                                                d2l_state_dict: Path) -> None:
    torchvision = pytest.importorskip("torchvision")
    pytest.importorskip("onnxruntime")
    from PIL import Image

    crops = tmp_path / "crops"
    crops.mkdir()
    expected = {}
    for jpg in sorted((voc_sample_dir / "JPEGImages").glob("*.jpg")):
        image = torchvision.io.read_image(str(jpg))  # as d2l.read_voc_images reads them
        crop = torchvision.transforms.functional.crop(image, *D2L_CROP)
        Image.fromarray(crop.permute(1, 2, 0).numpy()).save(crops / f"{jpg.stem}.png")
        expected[jpg.stem] = _d2l_predict(d2l_net, crop).numpy()
    assert len({int(v) for labels in expected.values() for v in np.unique(labels)}) > 1  # not a constant net

    monkeypatch.chdir(tmp_path)
    assert run(["import", "d2l", str(d2l_state_dict)]) == 0
    assert run(["export", "checkpoints/d2l-fcn32s.pt", "--out", "export/fcn.onnx"]) == 0
    assert run(["infer", "export/fcn.onnx", "crops", "--out", "masks", "--device", "cpu"]) == 0
    agree = total = 0
    for stem, labels in expected.items():
        mask = np.asarray(Image.open(tmp_path / "masks" / f"{stem}.png"))
        agree += int((mask == labels).sum())
        total += labels.size
    assert agree / total >= 0.9999, f"agreement {agree / total:.6f}"


def test_whole_pickled_module_is_refused(tmp_path: Path, monkeypatch, capsys, d2l_net) -> None:
    torch = pytest.importorskip("torch")
    torch.save(d2l_net, tmp_path / "net.pt")
    monkeypatch.chdir(tmp_path)
    assert run(["import", "d2l", "net.pt"]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "pickled" in err and "state_dict()" in err
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("content", ["not a torch file", "tensor-list"])
def test_not_a_state_dict_is_refused(tmp_path: Path, monkeypatch, capsys, content: str) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "w.pt"
    if content == "tensor-list":
        torch.save([torch.zeros(2)], path)
    else:
        path.write_text(content)
    monkeypatch.chdir(tmp_path)
    assert run(["import", "d2l", "w.pt"]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "state dict" in err and "fix:" in err
    assert not (tmp_path / "checkpoints").exists()


def test_unknown_layout_names_first_missing_and_unexpected_keys(tmp_path: Path, d2l_net) -> None:
    torch = pytest.importorskip("torch")
    from fcn_deploy.importers.d2l import import_d2l

    state = d2l_net.state_dict()
    del state["4.0.conv1.weight"]
    state["head.extra"] = torch.zeros(1)
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(InputError) as caught:
        import_d2l(tmp_path / "w.pt", tmp_path / "ck.pt")
    text = str(caught.value)
    assert "missing (first: backbone.layer1.0.conv1.weight)" in text and "unexpected (first: head.extra)" in text
    assert "layouts tried: d2l ResNet-18 FCN (fcn32s)" in text
    assert not (tmp_path / "ck.pt").exists()


def test_class_count_contradicting_the_weights_exits_1(tmp_path: Path, monkeypatch, capsys, d2l_state_dict: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(["import", "d2l", str(d2l_state_dict), "--num-classes", "5"]) == 1
    err = capsys.readouterr().err
    assert "--num-classes 5 contradicts the weights" in err and "fix: pass --num-classes 21" in err
    assert not (tmp_path / "checkpoints").exists()


def test_notebook_vgg11_layout_maps_onto_vgg11(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from torch import nn

    from fcn_deploy.checkpoint import load_model
    from fcn_deploy.importers.d2l import import_d2l

    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["A"], batch_norm=True)
    net = nn.Sequential(*list(features.children())[:-1])
    net.add_module("final_conv", nn.Conv2d(512, 21, kernel_size=1))
    net.add_module("transpose_conv", nn.ConvTranspose2d(21, 21, kernel_size=32, padding=8, stride=16))
    torch.save(net.state_dict(), tmp_path / "vgg.pt")
    path, layout = import_d2l(tmp_path / "vgg.pt", tmp_path / "ck.pt")
    model, info = load_model(path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert info.spec.arch == "vgg11" and torch.equal(model(x), net.eval()(x))


@pytest.mark.parametrize("command", [["d2l"], ["torchvision", "fcn_resnet50"]])
def test_nan_weights_are_refused_at_import(tmp_path: Path, monkeypatch, capsys, d2l_net, command) -> None:
    """A state dict from a diverged run never becomes a checkpoint (it would predict background everywhere)."""
    torch = pytest.importorskip("torch")
    state = d2l_net.state_dict()
    state["final_conv.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "w.pt")
    monkeypatch.chdir(tmp_path)
    assert run(["import", *command, "w.pt", "--out", "ck.pt"]) == 1
    err = capsys.readouterr().err
    assert "w.pt holds non-finite weights (NaN or infinity) in 1 tensor(s): final_conv.weight" in err
    assert "diverged" in err and not (tmp_path / "ck.pt").exists()
