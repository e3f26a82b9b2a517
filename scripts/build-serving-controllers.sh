#!/usr/bin/env bash
# Builds the serving systems' own controllers from the Go module proxy, once, into a cache
# outside the repository, and prints the two binaries' paths (one a line):
#   seldon-operator  Seldon Core's v1 operator v1.16.0 (github.com/seldonio/seldon-core/operator)
#   kserve-manager   KServe v0.15.2's cmd/manager (RawDeployment mode needs no Knative)
# Their CRDs, webhook manifests and config are read from the Go module cache
# (`go env GOMODCACHE`) by lykeion.serving_controllers; this script downloads those modules.
# Same throwaway wrapper-module trick as build-control-plane.sh. Seldon's operator replaces
# k8s.io/client-go in its own go.mod; a dependency's replace directives are ignored, so the
# wrapper repeats it (without it client-go v0.23.6 fails to compile against gnostic).
set -euo pipefail

SELDON_VERSION="${LYKEION_SELDON_VERSION:-1.16.0}"
KSERVE_VERSION="${LYKEION_KSERVE_VERSION:-0.15.2}"
CACHE="${LYKEION_CACHE:-$HOME/.cache/lykeion}"
BIN="$CACHE/serving-controllers/seldon-$SELDON_VERSION-kserve-$KSERVE_VERSION/bin"

have_all() { [[ -x "$BIN/seldon-operator" && -x "$BIN/kserve-manager" ]]; }
print() { echo "$BIN/seldon-operator"; echo "$BIN/kserve-manager"; }
modules_present() {
  # The fixtures read CRDs and config from the module cache: make sure it still holds them.
  go mod download "github.com/seldonio/seldon-core/operator@v$SELDON_VERSION" \
    "github.com/kserve/kserve@v$KSERVE_VERSION" >&2
}
if have_all; then modules_present; print; exit 0; fi
mkdir -p "$BIN"
# One build at a time: a second caller waits for the first and then finds the binaries.
exec 9>"$BIN/../.lock"
flock 9
if have_all; then modules_present; print; exit 0; fi
export GOFLAGS="-buildvcs=false -trimpath" CGO_ENABLED=0 GOTOOLCHAIN=local
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [[ ! -x "$BIN/kserve-manager" ]]; then
  mkdir -p "$work/kserve" && cd "$work/kserve"
  go mod init lykeion.local/kserve >/dev/null 2>&1
  echo "require github.com/kserve/kserve v$KSERVE_VERSION" >> go.mod
  printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/kserve/kserve/cmd/manager"\n' > tools.go
  nice -n 19 go mod tidy -e >&2
  nice -n 19 go build -ldflags "-s -w" -o "$BIN/kserve-manager.tmp" github.com/kserve/kserve/cmd/manager >&2
  mv "$BIN/kserve-manager.tmp" "$BIN/kserve-manager"
fi

if [[ ! -x "$BIN/seldon-operator" ]]; then
  mkdir -p "$work/seldon" && cd "$work/seldon"
  go mod init lykeion.local/seldon >/dev/null 2>&1
  module_dir="$(go mod download -json "github.com/seldonio/seldon-core/operator@v$SELDON_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  {
    echo "require github.com/seldonio/seldon-core/operator v$SELDON_VERSION"
    # Repeat the operator's own replace directives (client-go among them).
    awk '/^replace \($/{inblock=1; print; next} inblock{print; if ($0 ~ /^\)/) inblock=0; next}
         /^replace /{print}' "$module_dir/go.mod" | grep -v '=> \./' || true
  } >> go.mod
  printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/seldonio/seldon-core/operator"\n' > tools.go
  nice -n 19 go mod tidy -e >&2
  nice -n 19 go build -ldflags "-s -w" -o "$BIN/seldon-operator.tmp" github.com/seldonio/seldon-core/operator >&2
  mv "$BIN/seldon-operator.tmp" "$BIN/seldon-operator"
fi
have_all
print
