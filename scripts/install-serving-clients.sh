#!/usr/bin/env bash
# Installs the third-party inference clients our model server must stay compatible with
# into their own virtualenv in a cache outside the repository, once: seldon-core's
# `SeldonClient` (Seldon v1 protocol) and tritonclient's HTTP client (V2 / Open Inference
# Protocol). Prints the venv's python on stdout; tests run
# `<python> tests/compat/serving_clients.py ...` with it.
#
# Its own venv because these are clients nobody here wrote and they pin what the operator
# cannot have: seldon-core 1.19.0 wants numpy < 2, protobuf == 5.29.5, grpcio-reflection
# == 1.62.3 and a Flask/gunicorn/jaeger server stack. That same protobuf pin is why only
# tritonclient's `http` extra is installed: its `grpc` extra needs protobuf >= 6.30.
# seldon-core 1.19.0 declares Python >= 3.12 and its numpy < 2 has no wheels past 3.12, so
# this needs exactly 3.12: $PYTHON if set, else `python3.12` on PATH, else pyenv's newest. The stamp file holds the pins;
# a venv whose stamp differs is rebuilt, one whose stamp matches is left alone (fast).
set -euo pipefail

PINS=(
  "seldon-core==${LYKEION_SELDON_CORE_VERSION:-1.19.0}"
  "tritonclient[http]==${LYKEION_TRITONCLIENT_VERSION:-2.73.0}"
)
CACHE="${LYKEION_CACHE:-$HOME/.cache/lykeion}"
VENV="$CACHE/serving-clients"
STAMP="$VENV/.lykeion-pins"

if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "${PINS[*]}" ]]; then
  echo "$VENV/bin/python"
  exit 0
fi

# The first interpreter that really is 3.12 and can make a venv (a pyenv shim on PATH may
# exist without that version being selected, and Debian's python3.12 lacks ensurepip
# unless python3.12-venv is installed, so running it is the only test).
usable() { "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1; }
PY=""
candidates=()
[[ -n "${PYTHON:-}" ]] && candidates+=("$PYTHON")
candidates+=(python3.12)
# pyenv's versions even when pyenv itself is not on PATH (as in a non-login shell).
root="${PYENV_ROOT:-$HOME/.pyenv}"
command -v pyenv >/dev/null 2>&1 && root="$(pyenv root)"
if [[ -d "$root/versions" ]]; then
  for v in $(ls -1 "$root/versions" 2>/dev/null | grep -E '^3\.12\.[0-9]+$' | sort -rV); do
    candidates+=("$root/versions/$v/bin/python3.12")
  done
fi
for c in "${candidates[@]}"; do
  if usable "$c"; then PY="$c"; break; fi
done
if [[ -z "$PY" ]]; then
  echo "install-serving-clients.sh: seldon-core ${PINS[0]#*==} needs Python 3.12 with venv" \
    "support; none found (tried: ${candidates[*]}). Install one (e.g. \`pyenv install 3.12\`)" \
    "or set PYTHON=/path/to/python3.12." >&2
  exit 1
fi

rm -rf "$VENV"
mkdir -p "$CACHE"
"$PY" -m venv "$VENV" >&2
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "${PINS[@]}" >&2
"$VENV/bin/python" -c "import seldon_core.seldon_client, tritonclient.http" >&2
printf '%s' "${PINS[*]}" > "$STAMP"
echo "$VENV/bin/python"
