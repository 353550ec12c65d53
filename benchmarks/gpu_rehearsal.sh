#!/usr/bin/env bash
# Rehearses a GPU-machine command on this CPU, so that a session's few device minutes are not
# spent on an import error. It builds what the device tool gives: Python 3.12 with only the GPU
# image's packages (../shared/gpu/README.md: JAX, numpy, scikit-learn, pandas, pyyaml, tqdm,
# matplotlib, pytest, and the pure packages Keras imports there), no TensorFlow, Ray, aeon or
# pytest-xdist; a copy of the working tree as the tool copies it (tracked and unignored files,
# and .gpu); and the project's wheels installed by .gpu/env.sh, as there. Then it runs the
# command given there (default: the GPU benchmark's smoke run) and copies $OUT back.
#
#   bash benchmarks/gpu_rehearsal.sh                      # gpu.py --smoke, results in benchmarks/results/rehearsal
#   bash benchmarks/gpu_rehearsal.sh 'python3 -m pytest -q tests/encoderkit/test_device_probe.py'
#
# Run from the project's root. Needs a python3.12 (PYTHON312=..., else PATH or pyenv) and PyPI.
# The environment is kept in ${REHEARSAL_VENV:-$TMPDIR/encoderkit-gpu-image} for the next run.
set -euo pipefail
root=$PWD
[ -f pyproject.toml ] && [ -d benchmarks ] || { echo "gpu_rehearsal.sh: run it from the project's root" >&2; exit 2; }
command=${1:-'python3 benchmarks/gpu.py --smoke --out $OUT'}

python312=${PYTHON312:-}
if [ -z "$python312" ]; then
  for candidate in python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12; do
    if "$candidate" --version >/dev/null 2>&1; then python312=$candidate; break; fi
  done
fi
[ -n "$python312" ] || { echo "gpu_rehearsal.sh: no python3.12 found (set PYTHON312)" >&2; exit 2; }

version() {  # the project .venv's version of a package, so the rehearsal matches what CI tests
  .venv/bin/python -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'
}
venv=${REHEARSAL_VENV:-${TMPDIR:-/tmp}/encoderkit-gpu-image}
if [ ! -x "$venv/bin/python3" ]; then
  "$python312" -m venv "$venv"
  pin() { local v; v=$(version "$1"); echo "$1${v:+==$v}"; }
  # The image's own packages (JAX for the CPU here; PyTorch's pure dependencies without it:
  # jinja2 brings markupsafe, which Optuna's alembic/mako need), then what Keras imports that
  # the image had beside them (Keras ran there from wheels installed with --no-deps).
  "$venv/bin/pip" install -q "jax[cpu]==$(version jax)" "$(pin numpy)" "$(pin scikit-learn)" "$(pin scipy)" \
    pandas pyyaml tqdm matplotlib "pytest<9.2" typing-extensions filelock sympy networkx jinja2 fsspec \
    absl-py rich h5py 2>&1 | grep -v '^WARNING: Location' || true
fi
[ -d .gpu/whl ] || bash ../shared/gpu/prepare.sh

copy=$(mktemp -d)
out=$root/benchmarks/results/rehearsal
trap 'rm -rf "$copy"' EXIT
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$copy"
cp -r .gpu "$copy/.gpu" && rm -rf "$copy/.gpu/site"
mkdir -p "$copy/out"
echo "rehearsal: $("$venv/bin/python3" --version) in $copy: $command"
set +e
(cd "$copy" && export PATH="$venv/bin:$PATH" OUT="$copy/out" && source .gpu/env.sh && eval "$command")
status=$?
set -e
if [ -n "$(ls -A "$copy/out")" ]; then mkdir -p "$out" && cp -r "$copy/out/." "$out/" && echo "rehearsal: \$OUT copied to $out"; fi
echo "rehearsal: exit status $status"
exit $status
