#!/usr/bin/env bash
# Installs Seldon's MLServer with its MLflow runtime into its own virtualenv in a cache
# outside the repository, once. Prints the venv's bin directory on stdout (start a server
# with `<bin>/mlserver start <model-dir>`; `<bin>/python` has mlflow and scikit-learn to
# save a model for it).
#
# Its own venv because MLServer is the reference V2 (Open Inference Protocol) server we
# compare our model server against, and it brings a server stack of its own (FastAPI
# < 0.116, uvicorn, uvloop, aiokafka, OpenTelemetry, tritonclient, the full mlflow with
# its tracking server) that has no place in the operator's environment; the tests only
# talk to it over HTTP.
#
# mlserver 1.7.1 declares Python < 3.13, so this needs a 3.12 or 3.11 interpreter: $PYTHON
# if set, else `python3.12` / `python3.11` on PATH, else pyenv's (where pyenv's global is
# 3.11 that is python3.11, the operator's own Python, so the `python_version` a model
# records matches). mlserver-mlflow only asks for mlflow >= 2.19; mlflow is pinned to the
# release the operator's environment resolves to (pyproject: >= 3.10), so a model the
# operator logs loads here as written. pandas is held below 3 as a precaution: mlserver
# 1.7.1 predates pandas 3, and its pandas codec maps object columns to BYTES, the dtype
# pandas 3 no longer gives strings. The stamp file holds the pins; a venv whose stamp
# differs is rebuilt, one whose stamp matches is left alone (fast).
set -euo pipefail

PINS=(
  "mlserver==${LYKEION_MLSERVER_VERSION:-1.7.1}"
  "mlserver-mlflow==${LYKEION_MLSERVER_VERSION:-1.7.1}"
  "mlflow==3.17.2"
  "scikit-learn==1.9.1"
  "pandas==2.3.3"
)
CACHE="${LYKEION_CACHE:-$HOME/.cache/lykeion}"
VENV="$CACHE/mlserver"
STAMP="$VENV/.lykeion-pins"

if [[ -x "$VENV/bin/mlserver" && -f "$STAMP" && "$(cat "$STAMP")" == "${PINS[*]}" ]]; then
  echo "$VENV/bin"
  exit 0
fi

# The first interpreter that really is 3.12 or 3.11 and can make a venv (a pyenv shim on
# PATH may exist without that version being selected, and Debian's python3.x lacks
# ensurepip unless python3.x-venv is installed, so running it is the only test).
usable() { "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info[:2] not in ((3, 12), (3, 11)))' >/dev/null 2>&1; }
PY=""
candidates=()
[[ -n "${PYTHON:-}" ]] && candidates+=("$PYTHON")
candidates+=(python3.12 python3.11)
# pyenv's versions even when pyenv itself is not on PATH (as in a non-login shell).
root="${PYENV_ROOT:-$HOME/.pyenv}"
command -v pyenv >/dev/null 2>&1 && root="$(pyenv root)"
if [[ -d "$root/versions" ]]; then
  for v in $(ls -1 "$root/versions" 2>/dev/null | grep -E '^3\.1[12]\.[0-9]+$' | sort -rV); do
    candidates+=("$root/versions/$v/bin/python3")
  done
fi
for c in "${candidates[@]}"; do
  if usable "$c"; then PY="$c"; break; fi
done
if [[ -z "$PY" ]]; then
  echo "install-mlserver.sh: mlserver needs Python 3.12 or 3.11 with venv support;" \
    "none found (tried: ${candidates[*]}). Set PYTHON=/path/to/python3.12." >&2
  exit 1
fi

rm -rf "$VENV"
mkdir -p "$CACHE"
"$PY" -m venv "$VENV" >&2
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "${PINS[@]}" >&2
"$VENV/bin/python" -c "import mlserver, mlserver_mlflow, mlflow, sklearn" >&2
printf '%s' "${PINS[*]}" > "$STAMP"
echo "$VENV/bin"
