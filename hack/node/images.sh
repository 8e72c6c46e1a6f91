#!/usr/bin/env bash
# Builds the images the real node runs, with no Docker engine and no registry, as OCI archives
# cached by the hash of their inputs under ${XDG_CACHE_HOME:-~/.cache}/magent2/images:
#   python-base  Debian bookworm minbase + python3 and venv (debootstrap), committed by buildah
#   redis        python-base + Debian's redis-server (the chart's Redis, redis.image.*)
#   pause        the static pause binary from `hack/tools.sh node` (containerd's sandbox_image)
#   keda         KEDA's operator (/keda) and metrics adapter (/keda-adapter), static binaries from
#                `hack/tools.sh node`, on scratch, running as a non-root user
#   gateway, worker, operator   the repo's own Dockerfiles, unchanged, built by `buildah bud`
#                               with --build-arg PYTHON_IMAGE=<python-base>
# Writes .tools/node/images.env (NAME=image reference, NAME_ARCHIVE=path) for tests/node.
set -euo pipefail
cd "$(dirname "$0")/../.."

SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_PACKAGES=python3,python3-venv,python-is-python3
BASE_TAG=$SUITE-1          # bump when the base's recipe changes

cache="${XDG_CACHE_HOME:-$HOME/.cache}/magent2"
images="$cache/images"
out="$PWD/.tools/node"
mkdir -p "$images" "$out"
exec 9>"$images/.lock"
flock 9
buildah=(buildah --root "$images/storage" --runroot "$images/run")
# buildah sets up CNI on every start (creating /etc/cni/net.d); keep that inside the cache too.
printf '[network]\nnetwork_config_dir = "%s"\n' "$images/cni" >"$images/containers.conf"
export CONTAINERS_CONF="$images/containers.conf"
env_file="$out/images.env.new"
: >"$env_file"

have() { [[ -s "$images/$1.tar" ]]; }
record() {  # record <NAME> <reference> <archive>
  echo "$1=$2" >>"$env_file"
  echo "$1_ARCHIVE=$images/$3.tar" >>"$env_file"
}
timed() {  # timed <what> <cmd...>
  local started=$SECONDS
  echo "images.sh: building $1 ..." >&2
  "${@:2}"
  echo "images.sh: built $1 in $((SECONDS - started))s" >&2
}
export_image() {  # export_image <reference> <archive name>: an OCI archive ctr can import
  rm -f "$images/$2.tar.part"
  "${buildah[@]}" push "$1" "oci-archive:$images/$2.tar.part:$1" >/dev/null
  mv "$images/$2.tar.part" "$images/$2.tar"
}

base_ref=localhost/magent2-python-base:$BASE_TAG
build_base() {
  local rootfs="$images/rootfs-$BASE_TAG"
  rm -rf "$rootfs"
  debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$rootfs" "$MIRROR" >/dev/null
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  local c
  c=$("${buildah[@]}" from scratch)
  "${buildah[@]}" copy "$c" "$rootfs" / >/dev/null
  "${buildah[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd /bin/bash "$c"
  "${buildah[@]}" commit --rm "$c" "$base_ref" >/dev/null
  rm -rf "$rootfs"
  export_image "$base_ref" "python-base-$BASE_TAG"
}
# The app images are built FROM the base: it must exist in buildah's storage, not only as an archive.
if ! have "python-base-$BASE_TAG" || ! "${buildah[@]}" inspect "$base_ref" >/dev/null 2>&1; then
  timed python-base build_base
fi

redis_ref=localhost/magent2-redis:$BASE_TAG
build_redis() {
  local c
  c=$("${buildah[@]}" from --pull-never "$base_ref")
  "${buildah[@]}" run --isolation chroot "$c" -- sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends redis-server >/dev/null && rm -rf /var/lib/apt/lists/*'
  "${buildah[@]}" commit --rm "$c" "$redis_ref" >/dev/null
  export_image "$redis_ref" "redis-$BASE_TAG"
}
have "redis-$BASE_TAG" || timed redis build_redis
record REDIS_IMAGE "$redis_ref" "redis-$BASE_TAG"

pause_ref=localhost/magent2-pause:1
build_pause() {
  local c
  c=$("${buildah[@]}" from scratch)
  "${buildah[@]}" copy "$c" .tools/bin/pause /pause >/dev/null
  "${buildah[@]}" config --entrypoint '["/pause"]' "$c"
  "${buildah[@]}" commit --rm "$c" "$pause_ref" >/dev/null
  export_image "$pause_ref" pause-1
}
have pause-1 || timed pause build_pause
record PAUSE_IMAGE "$pause_ref" pause-1

keda_version=$(readlink .tools/bin/keda | sed -n 's|.*/keda-\(v[^/]*\)/bin/keda$|\1|p')
keda_ref=localhost/magent2-keda:$keda_version
build_keda() {
  local c
  c=$("${buildah[@]}" from scratch)
  "${buildah[@]}" copy "$c" .tools/bin/keda /keda >/dev/null
  "${buildah[@]}" copy "$c" .tools/bin/keda-adapter /keda-adapter >/dev/null
  "${buildah[@]}" config --user 1000:1000 --entrypoint '["/keda"]' "$c"
  "${buildah[@]}" commit --rm "$c" "$keda_ref" >/dev/null
  export_image "$keda_ref" "keda-$keda_version"
}
have "keda-$keda_version" || timed keda build_keda
record KEDA_IMAGE "$keda_ref" "keda-$keda_version"

# The app images' tag is the hash of everything they are built from, so an edit rebuilds them.
app_tag=$(find Dockerfile.gateway Dockerfile.worker pyproject.toml README.md services operator -type f \
  -not -path '*/__pycache__/*' -not -path '*.egg-info/*' -print0 | sort -z | xargs -0 sha256sum \
  | sha256sum | cut -c1-12)
# pip inside the build must trust what the host trusts (its CA bundle and pip configuration).
mounts=(-v /etc/ssl/certs:/etc/ssl/certs:ro)
[[ -f /etc/pip.conf ]] && mounts+=(-v /etc/pip.conf:/etc/pip.conf:ro)
build_app() {  # build_app <name> <Dockerfile> [--target T]
  local ref=localhost/magent2-$1:$app_tag
  "${buildah[@]}" bud --isolation chroot --pull-never --layers --quiet "${mounts[@]}" \
    --build-arg PYTHON_IMAGE="$base_ref" -f "$2" "${@:3}" -t "$ref" . >/dev/null
  export_image "$ref" "magent2-$1-$app_tag"
}
for spec in "gateway Dockerfile.gateway" "worker Dockerfile.worker --target worker" \
  "operator Dockerfile.worker --target operator"; do
  read -r name dockerfile target <<<"$spec"
  have "magent2-$name-$app_tag" || timed "$name" build_app "$name" "$dockerfile" $target
  record "${name^^}_IMAGE" "localhost/magent2-$name:$app_tag" "magent2-$name-$app_tag"
done

mv "$env_file" "$out/images.env"
echo "images.sh: images in $out/images.env" >&2
