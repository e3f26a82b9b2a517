#!/usr/bin/env bash
# Prints the path of Google's Cloud Bigtable emulator (cbtemulator), building it once if
# needed. Uses the Google Cloud CLI's copy when that component is installed; otherwise
# builds cloud.google.com/go/bigtable/cmd/emulator from the Go module proxy into a cache
# outside the repository. LYKEION_BIGTABLE_EMULATOR_SOURCE=go skips the CLI's copy.
set -euo pipefail

VERSION="${LYKEION_BIGTABLE_EMULATOR_VERSION:-1.58.0}"
CACHE="${LYKEION_CACHE:-$HOME/.cache/lykeion}"
BIN="$CACHE/bigtable-emulator/$VERSION/bin"

if [[ "${LYKEION_BIGTABLE_EMULATOR_SOURCE:-}" != "go" ]] && command -v gcloud >/dev/null; then
  # The component lives next to the SDK root; `gcloud info` would take seconds to ask.
  sdk_root="$(dirname "$(dirname "$(readlink -f "$(command -v gcloud)")")")"
  if [[ -x "$sdk_root/platform/bigtable-emulator/cbtemulator" ]]; then
    echo "$sdk_root/platform/bigtable-emulator/cbtemulator"
    exit 0
  fi
fi

if [[ -x "$BIN/emulator" ]]; then
  echo "$BIN/emulator"
  exit 0
fi
mkdir -p "$BIN"
GOBIN="$BIN" CGO_ENABLED=0 GOFLAGS="-buildvcs=false -trimpath" GOTOOLCHAIN=local \
  go install -ldflags "-s -w" "cloud.google.com/go/bigtable/cmd/emulator@v$VERSION" >&2
echo "$BIN/emulator"
