# Sourced by the image scripts: buildah with its storage in the cache, outside the
# repository and outside /var/lib/containers, and a cleanup of what buildah leaves on the
# host (/run/containers, /var/lib/containers/cache, /etc/cni/net.d/cni.lock of its CNI
# networking) when those were absent before.
# shellcheck shell=bash
BUILDAH_ROOT="${LYKEION_CACHE:-$HOME/.cache/lykeion}/buildah"
mkdir -p "$BUILDAH_ROOT/policy"
[[ -s $BUILDAH_ROOT/policy/policy.json ]] ||
  echo '{"default":[{"type":"insecureAcceptAnything"}]}' > "$BUILDAH_ROOT/policy/policy.json"
_buildah_absent=()
for _p in /run/containers /var/lib/containers /etc/cni /var/lib/cni; do [[ -e $_p ]] || _buildah_absent+=("$_p"); done
bah() {
  local sub=$1; shift
  case $sub in
    from|commit|push|pull|bud|build) set -- --signature-policy "$BUILDAH_ROOT/policy/policy.json" "$@";;
  esac
  nice -n 19 buildah --root "$BUILDAH_ROOT/storage" --runroot "$BUILDAH_ROOT/run" \
    --storage-driver overlay "$sub" "$@"
}
buildah_cleanup() {
  # overlay mounts of buildah's storage, deepest first
  awk -v r="$BUILDAH_ROOT" 'index($2, r) == 1 {print $2}' /proc/self/mounts | sort -r | xargs -r umount -l
  local p; for p in "${_buildah_absent[@]}"; do rm -rf "$p"; done
}
