#!/usr/bin/env bash
# `make image`: builds the kinship-search image with buildah (no Docker engine needed).
#
#   IMAGE       tag to build                      [kinship-search:<version>]
#   BASE_IMAGE  base for both stages              [localhost/kinship-base:bookworm, made here
#               from Debian packages with mmdebstrap when absent; any python:3.11-slim-like
#               image from a registry works too, e.g. docker.io/library/python:3.11-slim-bookworm]
#   PIP_CA      CA bundle pip needs to reach the package index [pip's own `cert` setting, if any];
#               passed as a build secret, so it never lands in a layer
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(python3 -c "import tomllib; print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])")
IMAGE=${IMAGE:-kinship-search:$version}
BASE_IMAGE=${BASE_IMAGE:-localhost/kinship-base:bookworm}

for tool in buildah; do
  command -v "$tool" >/dev/null || { echo "make image: $tool is not installed (apt-get install buildah mmdebstrap podman)" >&2; exit 2; }
done

if [[ $BASE_IMAGE == localhost/kinship-base:* ]] && ! buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
  command -v mmdebstrap >/dev/null && command -v podman >/dev/null || {
    echo "make image: $BASE_IMAGE is missing and mmdebstrap/podman are not installed to make it" >&2; exit 2; }
  echo "make image: making $BASE_IMAGE from Debian packages (mmdebstrap, Python 3.11)" >&2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  # minbase + Python and its venv module; apt's own sources of this machine, no mirror named.
  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' bookworm "$tmp/base.tar"
  podman import --quiet "$tmp/base.tar" "$BASE_IMAGE" >/dev/null
fi

ca=${PIP_CA:-$(python3 -m pip config get global.cert 2>/dev/null || true)}
ca=${ca:-${PIP_CERT:-}}
secret_file=$(mktemp)
trap 'rm -f "$secret_file"; [[ -n ${tmp:-} ]] && rm -rf "$tmp"' EXIT
if [[ -n $ca && -s $ca ]]; then cat "$ca" > "$secret_file"; fi   # empty: no proxy, no secret used

echo "make image: building $IMAGE on $BASE_IMAGE" >&2
buildah bud --isolation chroot --network host --layers \
  --build-arg "BASE_IMAGE=$BASE_IMAGE" \
  --secret "id=ca,src=$secret_file" \
  -f Containerfile -t "$IMAGE" .
echo "make image: built $IMAGE" >&2
