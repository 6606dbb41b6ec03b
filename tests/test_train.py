"""Training: a short CPU run learns the synthetic set; checkpoints round-trip; resume continues; options checked."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from fcn_deploy.checkpoint import load_model, read_checkpoint, save_checkpoint
from fcn_deploy.errors import InputError, MissingComponentError
from fcn_deploy.train import TrainConfig, train


def _tiny_config(data, out, **changes) -> TrainConfig:
    config = TrainConfig(data=data, epochs=1, batch_size=4, crop=(32, 32), out_dir=out, num_workers=0, lr=0.01)
    return dataclasses.replace(config, **changes)


@pytest.mark.slow
def test_short_run_learns(trained_run, trained_checkpoint):
    """fcn32s from scratch on the synthetic set: val mIoU >= 0.6 after the short run (see conftest.short_run_config)."""
    history = trained_run.history
    print(f"\nshort run: best val mIoU {trained_run.best_val_miou:.3f} at epoch {trained_run.best_epoch}, "
          f"{trained_run.seconds:.1f} s")
    assert trained_run.train_examples == 48 and trained_run.val_examples == 16
    assert len(history) == 12  # conftest.SHORT_RUN_EPOCHS
    assert history[-1].train_loss < history[0].train_loss
    assert trained_run.best_val_miou >= 0.6
    info, _ = read_checkpoint(trained_checkpoint)
    assert info.metrics["val_miou"] == pytest.approx(trained_run.best_val_miou)
    assert info.epoch == trained_run.best_epoch and len(info.history) == info.epoch
    spec = info.spec
    assert (spec.arch, spec.num_classes, spec.crop_size) == ("fcn32s", 21, (64, 96))
    assert (spec.shape_range.min, spec.shape_range.opt, spec.shape_range.max) == ((1, 32, 32), (1, 64, 96), (8, 1024, 1024))
    assert trained_run.last_checkpoint.is_file()


def test_checkpoint_round_trip(trained_checkpoint, tmp_path):
    model, info = load_model(trained_checkpoint)
    copy = save_checkpoint(tmp_path / "copy.pt", model, info)
    again, info_again = load_model(copy)
    assert info_again == info
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


def test_resume_starts_from_the_checkpoint_weights(tiny_train_voc, tmp_path, monkeypatch):
    """The resumed model holds the checkpoint's weights (and optimizer momentum) before its first step."""
    from fcn_deploy import train as train_module

    first = train(_tiny_config(tiny_train_voc, tmp_path / "ck", epochs=1, momentum=0.9))
    _, payload = read_checkpoint(first.last_checkpoint)
    built = {}
    real_build = train_module._build

    def recording_build(*args, **kwargs):
        model, optimizer = real_build(*args, **kwargs)
        built["weights"] = {name: value.detach().clone() for name, value in model.state_dict().items()}
        built["momentum"] = [optimizer.state[p].get("momentum_buffer") is not None for p in model.parameters()]
        return model, optimizer

    monkeypatch.setattr(train_module, "_build", recording_build)
    train(_tiny_config(tiny_train_voc, tmp_path / "ck", epochs=2, momentum=0.9, resume=first.last_checkpoint))
    stored = payload["state_dict"]
    assert built["weights"].keys() == stored.keys()
    assert all(torch.equal(built["weights"][name], stored[name].to(built["weights"][name].device)) for name in stored)
    assert any(built["momentum"])


def test_resume_continues(tiny_train_voc, tmp_path):
    first = train(_tiny_config(tiny_train_voc, tmp_path / "ck", epochs=1))
    assert [m.epoch for m in first.history] == [1]
    resumed = train(_tiny_config(tiny_train_voc, tmp_path / "ck", epochs=2, resume=first.last_checkpoint))
    assert [m.epoch for m in resumed.history] == [2]
    info, payload = read_checkpoint(resumed.last_checkpoint)
    assert info.epoch == 2 and [row["epoch"] for row in info.history] == [1.0, 2.0]
    assert payload["optimizer"] is not None
    with pytest.raises(InputError, match="already been trained for 2 epochs"):
        train(_tiny_config(tiny_train_voc, tmp_path / "ck", epochs=2, resume=resumed.last_checkpoint))
    with pytest.raises(InputError, match="--arch fcn8s does not match the fcn32s checkpoint"):
        train(_tiny_config(tiny_train_voc, tmp_path / "ck", epochs=3, arch="fcn8s", resume=resumed.last_checkpoint))


def test_other_arch_and_xavier(tiny_train_voc, tmp_path):
    result = train(_tiny_config(tiny_train_voc, tmp_path, arch="fcn8s", upsample_init="xavier"))
    assert result.best_checkpoint.name == "fcn8s-best.pt" and result.last_checkpoint.name == "fcn8s-last.pt"
    model, info = load_model(result.best_checkpoint)
    assert info.spec.arch == "fcn8s"


def test_cuda_missing_is_a_clear_error(tiny_train_voc, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(MissingComponentError, match="--device cuda") as info:
        train(_tiny_config(tiny_train_voc, tmp_path / "ck", device="cuda"))
    assert "--device cpu" in info.value.hint
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(arch="fcn4s"), "unknown arch 'fcn4s'"),
        (dict(crop=(48, 32)), "--crop 48x32 is not a multiple of 32"),
        (dict(crop=(96, 32)), "crop 96x32 is larger than every image"),
        (dict(epochs=0), "--epochs must be at least 1"),
        (dict(lr=-1.0), "--lr must be a positive number"),
        (dict(upsample_init="nearest"), "unknown --upsample-init"),
        (dict(device="tpu"), "unknown --device 'tpu'"),
    ],
)
def test_bad_options(tiny_train_voc, tmp_path, changes, message):
    with pytest.raises(InputError, match=message):
        train(_tiny_config(tiny_train_voc, tmp_path / "ck", **changes))
    assert not (tmp_path / "ck").exists()


def test_an_unscorable_first_epoch_does_not_freeze_the_best_checkpoint(tiny_train_voc, tmp_path, monkeypatch):
    """A NaN val mIoU (an all-void val split) in epoch 1 must not stop later epochs from becoming the best."""
    import fcn_deploy.train as train_module
    from fcn_deploy.metrics import SegmentationScores

    scores = iter([SegmentationScores(float("nan"), float("nan"), ()), SegmentationScores(0.5, 0.25, ())])
    monkeypatch.setattr(train_module, "scores_from_confusion", lambda matrix: next(scores))
    result = train(_tiny_config(tiny_train_voc, tmp_path, epochs=2))
    assert (result.best_epoch, result.best_val_miou) == (2, 0.25)
    info, _ = read_checkpoint(result.best_checkpoint)
    assert info.epoch == 2
