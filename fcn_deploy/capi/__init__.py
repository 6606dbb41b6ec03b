"""C API: libfcn_deploy.so for C/C++ hosts, in two implementations of the same header (fcn_deploy.h).

``build_native_library(out_dir)`` (native_build.py) compiles the C++ library over OpenVINO into a relocatable
folder (no Python in the host); ``build_library(out_dir)`` (build.py) writes the embedded library, which starts
this environment's Python runtime and runs the Python segmenter: lib/libfcn_deploy.so, include/fcn_deploy.h and
lib/pkgconfig/fcn_deploy.pc.
"""

from __future__ import annotations

from fcn_deploy.capi.build import CapiBuildConfig, CapiBuildResult, build_library
from fcn_deploy.capi.native_build import NativeBuildConfig, NativeBuildResult, build_native_library

__all__ = ["CapiBuildConfig", "CapiBuildResult", "NativeBuildConfig", "NativeBuildResult", "build_library",
           "build_native_library"]
