#!/usr/bin/env bash
# Builds what a one-node cluster needs beyond scripts/build-control-plane.sh, once, into a
# cache outside the repository, and prints the directory holding it:
#   kubelet, kube-controller-manager, kube-scheduler, kube-proxy (Kubernetes, Go module proxy)
#   coredns (Go module proxy)
#   pause (Kubernetes' own build/pause/linux/pause.c, static; the pod sandbox)
# Same wrapper-module trick as build-control-plane.sh; run it after that script so the Go
# build cache already holds the shared packages (about 3 minutes instead of 10).
set -euo pipefail

K8S_VERSION="${LYKEION_K8S_VERSION:-1.36.3}"
COREDNS_VERSION="${LYKEION_COREDNS_VERSION:-1.15.0}"
CACHE="${LYKEION_CACHE:-$HOME/.cache/lykeion}"
BIN="$CACHE/node/k8s-$K8S_VERSION-coredns-$COREDNS_VERSION/bin"
NODE_BINS=(kubelet kube-controller-manager kube-scheduler kube-proxy)

have_all() {
  local b; for b in "${NODE_BINS[@]}" coredns pause; do [[ -x "$BIN/$b" ]] || return 1; done
}
if have_all; then echo "$BIN"; exit 0; fi
mkdir -p "$BIN"
# One build at a time: a second caller waits for the first and then finds the binaries.
exec 9>"$BIN/../.lock"
flock 9
if have_all; then echo "$BIN"; exit 0; fi
export GOFLAGS="-buildvcs=false -trimpath" CGO_ENABLED=0 GOTOOLCHAIN=local
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
staging_version="v0.${K8S_VERSION#1.}"
upstream_dir="$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"

missing=()
for b in "${NODE_BINS[@]}"; do [[ -x "$BIN/$b" ]] || missing+=("k8s.io/kubernetes/cmd/$b"); done
if ((${#missing[@]})); then
  mkdir -p "$work/k8s" && cd "$work/k8s"
  go mod init lykeion.local/node >/dev/null 2>&1
  {
    echo "require k8s.io/kubernetes v$K8S_VERSION"
    echo "replace ("
    grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$upstream_dir/go.mod" \
      | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } >> go.mod
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for m in "${missing[@]}"; do printf '\t_ "%s/app"\n' "$m"; done
    printf ')\n'
  } > tools.go
  nice -n 19 go mod tidy -e >&2
  nice -n 19 go build -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION" \
    -o "$BIN/" "${missing[@]}" >&2
fi

if [[ ! -x "$BIN/coredns" ]]; then
  GOBIN="$work/gobin" nice -n 19 go install -ldflags "-s -w" "github.com/coredns/coredns@v$COREDNS_VERSION" >&2
  mv "$work/gobin/coredns" "$BIN/coredns"
fi

if [[ ! -x "$BIN/pause" ]]; then
  # registry.k8s.io is not reachable: the sandbox is Kubernetes' own pause.c.
  gcc -Os -static -DVERSION=v$K8S_VERSION-lykeion -o "$BIN/pause.tmp" \
    "$upstream_dir/build/pause/linux/pause.c"
  strip "$BIN/pause.tmp" && mv "$BIN/pause.tmp" "$BIN/pause"
fi
have_all
echo "$BIN"
