"""Fuzzing the checkpoint reader: any file ends in our error or a checkpoint whose spec works; no code ever runs."""

from __future__ import annotations

import io
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mutations import JSON_VALUES, budget, mutated

from fcn_deploy.checkpoint import CHECKPOINT_FORMAT, read_checkpoint
from fcn_deploy.errors import FcnDeployError
from fcn_deploy.spec import ModelSpec

torch = pytest.importorskip("torch")

_SEEDS: list[bytes] = []


def _seeds() -> list[bytes]:
    """A small real checkpoint, a bare state dict and a plain pickle (each as bytes)."""
    if not _SEEDS:
        payload = {"format": CHECKPOINT_FORMAT, "spec": ModelSpec(arch="fcn32s").to_dict(), "epoch": 3,
                   "metrics": {"miou": 0.5}, "history": [{"loss": 1.0}], "state_dict": {"w": torch.zeros(4)},
                   "optimizer": None}
        for item in (payload, {"w": torch.ones(2)}):
            buffer = io.BytesIO()
            torch.save(item, buffer)
            _SEEDS.append(buffer.getvalue())
        _SEEDS.append(pickle.dumps({"format": CHECKPOINT_FORMAT}, protocol=2))
    return _SEEDS


@settings(max_examples=budget(150))
@given(data=st.data())
def test_any_file_is_a_checkpoint_or_our_error(fuzz_dir, data) -> None:
    path = fuzz_dir / "fuzz.pt"
    path.write_bytes(data.draw(mutated(_seeds())))
    try:
        info, payload = read_checkpoint(path)
    except FcnDeployError as exc:
        assert exc.hint and "weights_only" not in str(exc)
        return
    assert ModelSpec.from_json(info.spec.to_json()) == info.spec and isinstance(payload, dict)


@settings(max_examples=budget(150))
@given(epoch=JSON_VALUES, metrics=JSON_VALUES, history=JSON_VALUES, spec=JSON_VALUES)
def test_fields_of_any_value_are_a_checkpoint_or_our_error(fuzz_dir, epoch, metrics, history, spec) -> None:
    path = fuzz_dir / "fields.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "spec": spec, "epoch": epoch, "metrics": metrics, "history": history},
               path)
    try:
        read_checkpoint(path)
    except FcnDeployError as exc:
        assert exc.hint
