#!/usr/bin/env bash
# Builds the Helm CLI from the Go module proxy into a cache outside the repository, once.
# Prints the path of the helm binary.
#
#   helm="$(scripts/install-helm.sh)" && "$helm" lint charts/lykeion
set -euo pipefail

HELM_VERSION="${LYKEION_HELM_VERSION:-3.22.0}"
CACHE="${LYKEION_CACHE:-$HOME/.cache/lykeion}"
BIN="$CACHE/helm/v$HELM_VERSION/bin"

if [[ -x "$BIN/helm" ]]; then
  echo "$BIN/helm"
  exit 0
fi
mkdir -p "$BIN"
export GOFLAGS="-buildvcs=false -trimpath" CGO_ENABLED=0 GOTOOLCHAIN=local
# helm's go.mod has no replace directives, so a plain `go install` builds it. The version
# string is normally stamped by helm's Makefile; do the same so `helm version` is honest.
GOBIN="$BIN" go install \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION" \
  "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION" >&2

echo "$BIN/helm"
