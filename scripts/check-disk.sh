#!/usr/bin/env bash
# Checks, before anything is built, that the filesystems CI writes to have room for what a
# run writes there, so that a full disk is reported here and not as "No space left on
# device" in the middle of an image build. Each place's need is summed per filesystem (they
# are usually one). Prints one line per filesystem; exits 1 naming what to remove when one
# is short.
#
#   scripts/check-disk.sh [REPO_DIR]
#
# Needs, in GB, measured on a 2-core machine of this kind (a cold run, every cache empty,
# grew the disk use by 39 GB: the project's cache 23, Go's module and build caches 11, the
# clone with its .venv 2, pytest's temporary folders 3): the project's cache (images,
# buildah's storage, containerd's store, binaries, environments) 25 cold / 12 warm (a
# rebuild writes the new images beside the old ones before they are pruned); Go's caches
# 12 cold / 1 warm; the clone 3; the temporary folder 4: 44 GB on one disk cold, 20 warm.
# LYKEION_DISK_NEED_GB replaces the need of every filesystem (whole GB; 0 skips the check).
set -euo pipefail
repo="$(cd "${1:-$(dirname "$0")/..}" && pwd)"
cache="${LYKEION_CACHE:-$HOME/.cache/lykeion}"
tmp="${TMPDIR:-/tmp}"
gocache="$(go env GOCACHE 2>/dev/null || echo "$HOME/.cache/go-build")"

# A cache is warm when its main product is there: the base image archive, the Go build cache.
if compgen -G "$cache/images/python-3.11-*.tar" >/dev/null; then cache_need=12; else cache_need=25; fi
if [[ -d $gocache && -n $(ls -A "$gocache" 2>/dev/null) ]]; then go_need=1; else go_need=12; fi

# The existing folder a path is (or will be) in: df needs one that exists.
existing() {
  local p=$1
  while [[ ! -e $p ]]; do p="$(dirname "$p")"; done
  echo "$p"
}

declare -A need=() free=() names=()
add() {  # add PATH GB LABEL
  local dir mount
  dir="$(existing "$1")"
  mount="$(df -P "$dir" | awk 'NR == 2 {print $6}')"
  need[$mount]=$(( ${need[$mount]:-0} + $2 ))
  free[$mount]="$(df -P -BG "$dir" | awk 'NR == 2 {sub("G", "", $4); print $4}')"
  names[$mount]="${names[$mount]:+${names[$mount]}, }$3 ${2} GB"
}
add "$cache" "$cache_need" "project cache $cache"
add "$gocache" "$go_need" "Go caches (build and modules)"
add "$repo" 3 "clone $repo"
add "$tmp" 4 "temporary folder $tmp"

override="${LYKEION_DISK_NEED_GB:-}"
if [[ -n $override && ! $override =~ ^[0-9]+$ ]]; then
  echo "LYKEION_DISK_NEED_GB=$override: give whole GB (digits only; 0 skips the check)" >&2
  exit 2
fi
short=0
for mount in "${!need[@]}"; do
  want=${need[$mount]}
  [[ -z $override ]] || want=$override
  echo "disk: $mount has ${free[$mount]} GB free; this run needs about $want GB there (${names[$mount]})"
  if (( want > 0 && free[$mount] < want )); then
    short=1
    echo "disk: $mount is $(( want - free[$mount] )) GB short." >&2
  fi
done
if ((short)); then
  {
    echo "Free space, or point LYKEION_CACHE / TMPDIR at a larger disk. The biggest folders in the project's cache:"
    du -sh "$cache"/* 2>/dev/null | sort -h | tail -8 || true
    echo "containerd's store ($cache/containerd) and buildah's ($cache/buildah) are caches: they can be"
    echo "deleted when no cluster and no image build runs (the next run imports or builds again)."
    echo "Clones of this repository left by earlier CI runs hold a .venv of about 2 GB each."
  } >&2
  exit 1
fi
