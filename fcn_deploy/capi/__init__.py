"""C API: libfcn_deploy.so embeds this environment's Python runtime and runs the segmenter for C/C++ hosts.

``build_library(out_dir)`` writes lib/libfcn_deploy.so, include/fcn_deploy.h and lib/pkgconfig/fcn_deploy.pc.
"""

from __future__ import annotations

from fcn_deploy.capi.build import CapiBuildConfig, CapiBuildResult, build_library

__all__ = ["CapiBuildConfig", "CapiBuildResult", "build_library"]
