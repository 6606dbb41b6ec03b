#!/usr/bin/env bash
# Create .venv (once) and install fcn-deploy with its test extras (dev, ray, openvino, tiff); re-installs only when pyproject.toml or the extras change.
# Also creates .venv-serve with the serve and openvino extras (PyTriton needs numpy < 2, the main environment runs numpy 2);
# set FCN_DEPLOY_NO_SERVE=1 to skip it.
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

make_venv .venv dev,ray,openvino,tiff  # the Ray and OpenVINO backend tests run wherever the suite runs
if [ -z "${FCN_DEPLOY_NO_SERVE:-}" ]; then
  make_venv .venv-serve serve,dev,openvino  # OpenVINO 2026.4 runs with numpy 1.26: serve --backend openvino is tested there
fi
