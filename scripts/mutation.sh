#!/usr/bin/env bash
# Mutation testing (mutmut 3) of the gates, the model contract, tiling and the segmenter: every surviving mutant
# is either an equivalent one or a missing test. Not part of CI: a full run takes hours on two cores.
# Arguments are passed to `mutmut run`, e.g. a mutant-name pattern: bash scripts/mutation.sh 'fcn_deploy.parity.gate*'
# Results stay in mutants/ (ignored by git); `mutmut results` lists survivors, `mutmut show NAME` shows one.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FCN_DEPLOY_NO_SERVE=1 bash "$root/scripts/setup.sh"
cd "$root"
if ! .venv/bin/python -c "import mutmut" 2>/dev/null; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check 'mutmut>=3.8,<4'
fi
.venv/bin/mutmut run "$@"
.venv/bin/mutmut results
