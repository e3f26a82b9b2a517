#!/usr/bin/env bash
# The test command: unit tests, then integration tests against a real etcd + kube-apiserver
# (built once into ~/.cache/lykeion) and the real operator, all started by the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -d .venv ]] || bash scripts/setup-dev.sh
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
