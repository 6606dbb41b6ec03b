"""Bring your own model: d2l-notebook and torchvision state dicts, any ``nn.Module``, foreign ONNX files.

Each importer checks what it is given and writes an ordinary fcn-deploy artifact with a complete spec, so
export, precision, build, infer, parity, bench, serving and the C API take it unchanged.
"""
