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
module="helm.sh/helm/v3@v$HELM_VERSION"

# helm's go.mod has no replace directives, so a plain `go install` builds it. What helm's
# Makefile stamps in with -ldflags is stamped here too: without it `helm version` is empty
# and `helm template`/`helm lint` assume Kubernetes 1.20 (wrong kubeVersion checks and
# deprecation warnings). The Kubernetes version is the one of the client-go helm uses.
helm_mod="$(go mod download -json "$module" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
client_go="$(awk '$1 == "k8s.io/client-go" {print $2; exit}' "$helm_mod")"  # e.g. v0.37.0
k8s_minor="$(echo "$client_go" | cut -d. -f2)"
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done

GOBIN="$BIN" go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION" >&2

echo "$BIN/helm"
