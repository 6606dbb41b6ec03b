#!/usr/bin/env bash
# Mutation testing (mutmut 3) of the gates, the model contract, tiling and the segmenter: every surviving mutant
# is either an equivalent one or a missing test. Not part of CI: it takes about an hour on two cores.
#
#   bash scripts/mutation.sh [PART [MUTANT ...]]   parts: gate contract tiling segmenter export (default: all)
#
# Each part mutates one module and runs only the tests that mirror it (a module's own tests must kill its
# mutants; the slow end-to-end tests would make a run take days), in a folder of its own, .mutation/PART
# (ignored by git), where mutmut keeps its state and resumes. Survivors: cd .mutation/PART && mutmut results,
# mutmut show NAME; recheck one after adding a test: bash scripts/mutation.sh PART NAME.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

declare -A module=(
  [gate]=fcn_deploy/parity/gate.py
  [contract]=fcn_deploy/contract.py
  [tiling]=fcn_deploy/tiling.py
  [segmenter]=fcn_deploy/segmenter.py
  [export]=fcn_deploy/export.py
)
declare -A tests=(
  [gate]="tests/parity/test_gate.py"
  [contract]="tests/test_contract_rules.py tests/test_spec.py tests/fuzz/test_fuzz_contract.py"
  [tiling]="tests/test_tiling.py tests/test_tiffio.py"
  [segmenter]="tests/test_segmenter.py tests/test_tiffio.py"
  [export]="tests/test_export.py"
)
# export.py is mutated only where it gates (its checks of the config, the graph and the ONNX against PyTorch)
declare -A names=(
  [export]="fcn_deploy.export.x__check_config* fcn_deploy.export.x_check_graph* fcn_deploy.export.x__verify_sizes* fcn_deploy.export.x__compare* fcn_deploy.export.xǁExportCheckǁ*"
)
# the tests' marker filter: export's slow tests export real models (a minute a surviving mutant); its checks are
# fed stand-in figures by the quick ones
declare -A marks=([export]="not gpu and not slow")
parts=(gate contract tiling segmenter export)

chosen=("${parts[@]}")
pattern=()
if (($#)); then
  if [[ -z "${module[$1]:-}" ]]; then
    echo "error: unknown part '$1'" >&2
    echo "fix: name one of: ${parts[*]}" >&2
    exit 1
  fi
  chosen=("$1")
  pattern=("${@:2}")
fi

FCN_DEPLOY_NO_SERVE=1 bash "$root/scripts/setup.sh"
mutmut="$root/.venv/bin/mutmut"
if ! "$root/.venv/bin/python" -c "import mutmut" 2>/dev/null; then
  "$root/.venv/bin/python" -m pip install --quiet --disable-pip-version-check 'mutmut>=3.8,<4'
fi

for part in "${chosen[@]}"; do
  work="$root/.mutation/$part"
  mkdir -p "$work"
  rm -rf "$work/fcn_deploy" "$work/tests"
  cp -a "$root/fcn_deploy" "$root/tests" "$work/"
  cp -a "$root/pyproject.toml" "$work/"  # the pytest settings; it has no [tool.mutmut], so mutmut reads setup.cfg
  {
    echo "[mutmut]"
    echo "source_paths = fcn_deploy/"  # the whole package is copied, so every import resolves
    echo "only_mutate = ${module[$part]}"
    echo "pytest_add_cli_args_test_selection ="
    for test in ${tests[$part]}; do echo "    $test"; done
    echo "pytest_add_cli_args ="
    printf '    %s\n' -p no:cacheprovider -m "${marks[$part]:-not gpu}" -x
    echo "process_isolation = forkserver"  # torch is not fork-safe after the stats run
  } > "$work/setup.cfg"
  read -r -a wanted <<< "${names[$part]:-}"
  ((${#pattern[@]})) && wanted=("${pattern[@]}")
  echo "== $part: ${module[$part]} against ${tests[$part]}"
  (cd "$work" && nice "$mutmut" run "${wanted[@]}" && "$mutmut" results)
done
