#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): one command, under 8 minutes on a bare GPU machine.
#
#   bash benchmarks/gpu_check.sh --wheels .whl --out "$OUT"    # Keras, namex, optree from the wheels in .whl
#   bash benchmarks/gpu_check.sh --tiny --out /tmp/gpu_check  # every section at tiny sizes on the CPU
#
# --wheels DIR installs DIR/*.whl offline into a scratch folder put on PYTHONPATH (the machine's own
# packages stay as they are). Python: $PYTHON if set, else this checkout's .venv with --tiny, else
# python3. The Keras backend is JAX unless KERAS_BACKEND says otherwise. The other flags go to
# gpu_check.py (--out, --reference, --budget, --sections; --help lists them).
set -u
cd "$(dirname "$0")/.."
wheels="" tiny=0 args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) wheels=${2:?--wheels needs a folder}; shift 2 ;;
    --wheels=*) wheels=${1#--wheels=}; shift ;;
    --tiny) tiny=1; args+=("$1"); shift ;;
    *) args+=("$1"); shift ;;
  esac
done
python=${PYTHON:-python3}
if [ -z "${PYTHON:-}" ] && [ "$tiny" = 1 ] && [ -x .venv/bin/python ]; then python=.venv/bin/python; fi
if [ -n "$wheels" ]; then
  site=$(mktemp -d /tmp/gpu_check_site.XXXXXX)
  if "$python" -m pip install -q --no-index --no-deps --target "$site" "$wheels"/*.whl; then
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "warning: could not install the wheels in $wheels; going on with what $python has" >&2
  fi
fi
export KERAS_BACKEND=${KERAS_BACKEND:-jax} TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
if [ "$tiny" = 1 ]; then export JAX_PLATFORMS=${JAX_PLATFORMS:-cpu}; fi
exec "$python" benchmarks/gpu_check.py ${args[@]+"${args[@]}"}
