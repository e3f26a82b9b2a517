#!/usr/bin/env bash
# Installs the BigQuery emulator (PyPI `bqemulator`) into its own virtualenv in a cache
# outside the repository, once. Prints the path of the executable to start it with
# (`<exe> start --rest-port N --grpc-port M`).
#
# Its own venv because it brings a server stack (FastAPI, SQLAlchemy, OpenTelemetry,
# grpcio-tools, sqlglot, a newer setuptools) that has no place in the operator's
# environment; the tests only talk to it over HTTP.
#
# bqemulator refuses to start unless DuckDB's `spatial` extension loads (for GEOGRAPHY),
# and DuckDB downloads extensions from its own repository, which is not a package
# registry we can reach; PyPI's `duckdb-ext-spatial` only exists for DuckDB <= 1.4, which
# this bqemulator no longer runs on. So the executable is a launcher that makes that one
# load best-effort: GEOGRAPHY is unavailable, everything else is the unmodified emulator.
# numpy: DuckDB needs it to register the emulator's Python UDFs, and bqemulator only
# declares it in extras. DuckDB pinned to the release this was tested with.
set -euo pipefail

VERSION="${LYKEION_BQEMULATOR_VERSION:-1.4.0}"
CACHE="${LYKEION_CACHE:-$HOME/.cache/lykeion}"
VENV="$CACHE/bqemulator-$VERSION"
EXE="$VENV/bin/lykeion-bqemulator"

if [[ -x "$EXE" ]] && "$VENV/bin/python" -c "import bqemulator.cli, numpy" >/dev/null 2>&1; then
  echo "$EXE"
  exit 0
fi
PYTHON="${PYTHON:-python3}"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV" >&2
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "bqemulator==$VERSION" "duckdb==2.0.1" numpy >&2

cat > "$EXE.tmp" <<PY
#!$VENV/bin/python
"""bqemulator with DuckDB's spatial extension optional (see install-bigquery-emulator.sh)."""
import sys

from bqemulator.domain.errors import InternalError
from bqemulator.storage.engine import DuckDBEngine

_load_spatial = DuckDBEngine._load_spatial


def _optional_spatial(self):
    try:
        _load_spatial(self)
    except InternalError as exc:
        print(f"lykeion-bqemulator: GEOGRAPHY unavailable: {exc}", file=sys.stderr)


DuckDBEngine._load_spatial = _optional_spatial

from bqemulator.cli import main  # noqa: E402

sys.exit(main())
PY
chmod +x "$EXE.tmp"
mv "$EXE.tmp" "$EXE"
echo "$EXE"
