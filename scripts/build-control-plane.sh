#!/usr/bin/env bash
# Builds kube-apiserver, kubectl and etcd from the Go module proxy into a cache outside
# the repository, once. Prints the directory holding the binaries.
#
# `go install` refuses k8s.io/kubernetes because its go.mod replaces the staging modules
# with local paths; a throwaway wrapper module that requires it and replaces every
# staging module with its tagged release builds the same binaries.
set -euo pipefail

K8S_VERSION="${LYKEION_K8S_VERSION:-1.36.3}"
ETCD_VERSION="${LYKEION_ETCD_VERSION:-3.6.16}"
CACHE="${LYKEION_CACHE:-$HOME/.cache/lykeion}"
BIN="$CACHE/control-plane/k8s-$K8S_VERSION-etcd-$ETCD_VERSION/bin"

if [[ -x "$BIN/kube-apiserver" && -x "$BIN/kubectl" && -x "$BIN/etcd" ]]; then
  echo "$BIN"
  exit 0
fi
mkdir -p "$BIN"
export GOFLAGS="-buildvcs=false -trimpath" CGO_ENABLED=0 GOTOOLCHAIN=local
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

staging_version="v0.${K8S_VERSION#1.}"

# Kubernetes: wrapper module with the staging replaces rewritten to tagged versions.
mkdir -p "$work/k8s" && cd "$work/k8s"
go mod init lykeion.local/controlplane >/dev/null 2>&1
upstream_mod="$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
{
  echo "require k8s.io/kubernetes v$K8S_VERSION"
  echo "replace ("
  grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$upstream_mod" \
    | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
  echo ")"
} >> go.mod
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubectl/pkg/cmd"
)
GO
go mod tidy -e >&2
go build -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION" \
  -o "$BIN/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl >&2

# etcd: its server module also replaces its sibling modules; same trick.
mkdir -p "$work/etcd" && cd "$work/etcd"
go mod init lykeion.local/etcd >/dev/null 2>&1
cat >> go.mod <<MOD
require go.etcd.io/etcd/server/v3 v$ETCD_VERSION
MOD
cat > tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3/etcdmain"
GO
go mod tidy -e >&2
go build -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3 >&2

echo "$BIN"
