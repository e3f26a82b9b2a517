#!/usr/bin/env bash
# Creates .venv with the operator, CLI and dev extras, pinned by requirements/constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -c requirements/constraints.txt -e ".[dev]"
