#!/usr/bin/env bash
# Create .venv (once) and install fcn-deploy with its test extras (torch, dev, ray, openvino, tiff, video); re-installs only when
# pyproject.toml or the extras change.
# Also creates .venv-serve with the serve, openvino and torch extras (PyTriton needs numpy < 2, the main environment
# runs numpy 2); set FCN_DEPLOY_NO_SERVE=1 to skip it.
# And .venv-runtime: the runtime install without PyTorch (the base package with the dev, ray, openvino and video extras), where the
# tests marked 'runtime' run once more; set FCN_DEPLOY_NO_RUNTIME=1 to skip it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"

make_venv() {  # make_venv FOLDER EXTRAS
  local venv="$root/$1" extras="$2" stamp="$root/$1/.fcn-deploy-installed"
  if [ ! -x "$venv/bin/python" ]; then
    echo "fcn-deploy: creating $1 ..."
    python3 -m venv "$venv"
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want $extras" ]; then  # a new extra re-installs too
    echo "fcn-deploy: installing the package and its dependencies into $1 (first run takes a few minutes) ..."
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[$extras]"
    echo "$want $extras" > "$stamp"
  fi
}

# the native C library ('fcn-deploy capi build --runtime native', tested in tests/capi) parses the model spec
# with nlohmann/json (header-only, from the distribution)
if [ ! -f /usr/include/nlohmann/json.hpp ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "fcn-deploy: installing nlohmann-json3-dev (for the native C library) ..."
    apt-get install -y -q nlohmann-json3-dev >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q nlohmann-json3-dev >/dev/null; }
  else
    echo "fcn-deploy: the native C library needs nlohmann/json; install it with: sudo apt-get install -y nlohmann-json3-dev" >&2
  fi
fi

# the GStreamer element ('fcn-deploy capi build --gstreamer', tested in tests/capi/test_gstreamer.py) builds against
# GStreamer's development files; the tests run pipelines with gst-launch-1.0 and the base and good plugins
gst_packages="libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good"
if ! pkg-config --exists gstreamer-video-1.0 2>/dev/null || ! command -v gst-launch-1.0 >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "fcn-deploy: installing GStreamer (for the fcnsegment element) ..."
    # shellcheck disable=SC2086
    apt-get install -y -q $gst_packages >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q $gst_packages >/dev/null; }
  else
    echo "fcn-deploy: the GStreamer element needs: sudo apt-get install -y $gst_packages" >&2
  fi
fi

# the HTML parity report is opened in headless Chromium by tests/parity/test_html_in_browser.py (skipped without it)
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "fcn-deploy: installing Chromium (the HTML parity report's browser test) ..."
    apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
  else
    echo "fcn-deploy: the browser test of the HTML parity report needs: sudo apt-get install -y chromium" >&2
  fi
fi

make_venv .venv torch,dev,ray,openvino,tiff,video  # the Ray and OpenVINO backend tests run wherever the suite runs
if [ -z "${FCN_DEPLOY_NO_SERVE:-}" ]; then
  make_venv .venv-serve torch,serve,dev,openvino  # OpenVINO 2026.4 runs with numpy 1.26: serve --backend openvino is tested there
fi
if [ -z "${FCN_DEPLOY_NO_RUNTIME:-}" ]; then
  make_venv .venv-runtime dev,ray,openvino,video  # no PyTorch (the native C library builds against OpenVINO): these extras must never pull it in
  if "$root/.venv-runtime/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)"; then
    echo "fcn-deploy: .venv-runtime has PyTorch installed; it must not (remove .venv-runtime and run again)" >&2
    exit 1
  fi
fi
