#!/usr/bin/env bash
# A Debian 12 (bookworm) Python 3.11 base image built without a registry, once, into a
# cache outside the repository: debootstrap (minbase) + python3, python3-venv,
# python-is-python3, ca-certificates (what python:3.11-slim holds); committed with buildah and saved as a docker-archive. Prints the archive.
#
#   scripts/build-base-image.sh            # -> ~/.cache/lykeion/images/python-3.11-bookworm.tar
#
# The image name inside the archive is localhost/lykeion-python:3.11-bookworm: the
# Dockerfile's PYTHON_IMAGE for `buildah bud` (scripts/build-images.sh).
# Needs root, debootstrap and buildah (apt-get install debootstrap buildah).
set -euo pipefail

CACHE="${LYKEION_CACHE:-$HOME/.cache/lykeion}"
SUITE="${LYKEION_DEBIAN_SUITE:-bookworm}"
MIRROR="${LYKEION_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
NAME="localhost/lykeion-python:3.11-$SUITE"
OUT="$CACHE/images/python-3.11-$SUITE.tar"

if [[ -s "$OUT" ]]; then echo "$OUT"; exit 0; fi
[[ $(id -u) == 0 ]] || { echo "building the base image needs root (debootstrap)" >&2; exit 1; }
for tool in debootstrap buildah; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install $tool" >&2; exit 1; }
done
mkdir -p "$CACHE/images"
work="$(mktemp -d "$CACHE/images/.base.XXXXXX")"
# shellcheck source=scripts/buildah-env.sh
source "$(dirname "$0")/buildah-env.sh"
container=""
cleanup() {
  [[ -n $container ]] && bah rm "$container" >/dev/null 2>&1
  # debootstrap leaves /proc and /sys mounted in the rootfs when it fails half-way.
  awk -v w="$work" 'index($2, w) == 1 {print $2}' /proc/self/mounts | sort -r | xargs -r umount -l
  rm -rf "$work"
  buildah_cleanup
}
trap cleanup EXIT

rootfs="$work/rootfs"
nice -n 19 debootstrap --variant=minbase \
  --include=python3,python3-venv,python-is-python3,ca-certificates \
  "$SUITE" "$rootfs" "$MIRROR" >&2
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

container="$(bah from scratch)"
mnt="$(bah mount "$container")"
tar -C "$rootfs" -cf - . | tar -C "$mnt" -xf -
bah umount "$container" >/dev/null
bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env LANG=C.UTF-8 --cmd python3 "$container"
bah commit --rm "$container" "$NAME" >&2
container=""
bah push "$NAME" "docker-archive:$work/base.tar:$NAME" >&2
mv "$work/base.tar" "$OUT"
echo "$OUT"
