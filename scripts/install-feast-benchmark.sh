#!/usr/bin/env bash
# Install Feast into its own venv for benchmarks/features.py; Feast never enters the
# project's environment. Idempotent: a venv with the pinned version is left alone.
# Prints the venv's python path on the last line.
set -euo pipefail

FEAST_VERSION="${FEAST_VERSION:-0.67.0}"
VENV="${LYKEION_FEAST_VENV:-$HOME/.cache/lykeion/feast-venv}"
PY="$VENV/bin/python"

if [ -x "$PY" ] && "$PY" -c "import feast, sys; sys.exit(feast.__version__ != '$FEAST_VERSION')" 2>/dev/null; then
    echo "$PY"
    exit 0
fi

mkdir -p "$(dirname "$VENV")"
python3 -m venv "$VENV"
"$PY" -m pip install --quiet --upgrade pip >&2
"$PY" -m pip install --quiet "feast[duckdb]==$FEAST_VERSION" >&2
"$PY" -c "import feast; print('feast', feast.__version__)" >&2
echo "$PY"
