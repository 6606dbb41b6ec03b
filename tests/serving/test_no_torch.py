"""Serving an ONNX file without PyTorch: ``triton export`` and ``serve`` with the import of torch blocked."""

from __future__ import annotations

import pytest
from serving.conftest import running_server

from fcn_deploy.serving.client import ClientConfig, segment_remote


@pytest.mark.slow
def test_triton_export_and_serve_of_an_onnx_file_never_import_torch(serve_stack, no_torch, tiny_fcn, image_dir,
                                                                    tmp_path) -> None:
    done = no_torch.cli("triton", "export", str(tiny_fcn), "--out", str(tmp_path / "repo"), "--device", "cpu",
                        "--segment-network", "in_process")
    assert done.returncode == 0, done.stderr
    with running_server(tiny_fcn, tmp_path / "srv", env=no_torch.variables()) as server:
        summary = segment_remote(server.http_url, [image_dir], tmp_path / "served", ClientConfig(progress=False))
    assert summary.count("failed") == 0 and summary.count("ok") == len(summary.images) > 0
    assert no_torch.attempts() == []
