#!/usr/bin/env bash
# Builds the project's Dockerfile as written with buildah (no Docker engine, no registry),
# one image per target, on the local Debian base (scripts/build-base-image.sh), and saves
# each as a docker-archive in a cache outside the repository. An image is rebuilt only
# when what it is built from changes (Dockerfile, pyproject.toml, requirements/,
# operator/, lykectl/, this script with its targets' extras). Prints one line per
# target: `TARGET IMAGE ARCHIVE`.
#
#   scripts/build-images.sh [TARGET=EXTRAS ...]
#   default targets: operator=operator workloads=pipelines,training training=training
#                    serving=serving,api,operator (model servers, routers and the Feature
#                    API, whose cluster loader reads objects through lykeion.kube: kopf)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
CACHE="${LYKEION_CACHE:-$HOME/.cache/lykeion}"
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=(operator=operator workloads=pipelines,training training=training serving=serving,api,operator)

base_archive="$(bash scripts/build-base-image.sh)"
base_name="localhost/lykeion-python:3.11-$(basename "$base_archive" .tar | sed 's/^python-3.11-//')"
digest="$(tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
  --exclude=__pycache__ --exclude='*.pyc' \
  -cf - Dockerfile .dockerignore pyproject.toml requirements operator lykectl \
  scripts/build-images.sh | sha256sum | cut -c1-12)"

# The project's dependencies and those of the extras (comma-separated), one per line.
dependency_list() {
  python3 -c "import sys, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']
print('\n'.join(p['dependencies'] + [d for e in sys.argv[1].split(',') for d in p['optional-dependencies'][e]]))" "$1"
}

mkdir -p "$CACHE/images"
# One build at a time (buildah's storage and the archives are shared).
exec 9>"$CACHE/images/.lock"
flock 9
source scripts/buildah-env.sh
trap buildah_cleanup EXIT
loaded=""
for target in "${TARGETS[@]}"; do
  name="${target%%=*}" extras="${target#*=}"
  image="localhost/lykeion-$name:$digest"
  archive="$CACHE/images/lykeion-$name-$digest.tar"
  if [[ ! -s $archive ]]; then
    if [[ -z $loaded ]]; then
      bah images -q "$base_name" >/dev/null 2>&1 || bah pull "docker-archive:$base_archive" >&2
      loaded=1
    fi
    start=$(date +%s)
    # pip reaches PyPI over the host's network; the host's CA bundle replaces the base
    # image's for RUN steps (it may carry a proxy's CA).
    # The dependency stage first, tagged by what it is built from: it stays in the
    # layer cache when the builds of earlier code are pruned below.
    # (by the extras' dependency list, as the Dockerfile's dependency stage sees it).
    # (A failure of the list stops the script: an assignment, not a process substitution.)
    listed="$(dependency_list "$extras")"
    dependencies="localhost/lykeion-dependencies-$name:$(cat Dockerfile requirements/* \
      <(echo "$listed") <(echo "$base_name") | sha256sum | cut -c1-12)"
    bud=(bah bud --network host --layers
      -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro
      --build-arg "PYTHON_IMAGE=$base_name" --build-arg "EXTRAS=$extras" -f Dockerfile)
    "${bud[@]}" --target dependencies -t "$dependencies" "$ROOT" >&2
    "${bud[@]}" -t "$image" "$ROOT" >&2
    rm -f "$archive.tmp"
    bah push "$image" "docker-archive:$archive.tmp:$image" >&2
    mv "$archive.tmp" "$archive"
    echo "built $image in $(( $(date +%s) - start ))s" >&2
    # archives of earlier builds of this target are stale
    find "$CACHE/images" -maxdepth 1 -name "lykeion-$name-*.tar" ! -name "$(basename "$archive")" -delete
    # Bounded storage: earlier builds of this target, earlier dependency stages, and the
    # untagged builder stages of every earlier build (the dependency stages they were
    # built on are tagged, so they stay).
    # (`bah` is a shell function: a loop, not xargs.)
    for stale in $(bah images --format '{{.Name}}:{{.Tag}}' \
      | grep -e "^localhost/lykeion-$name:" -e "^localhost/lykeion-dependencies-$name:" \
      | grep -v -e ":$digest\$" -e "^$dependencies\$") $(bah images -q --filter dangling=true); do
      bah rmi "$stale" >/dev/null 2>&1 || true
    done
  fi
  echo "$name $image $archive"
done
