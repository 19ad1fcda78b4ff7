#!/usr/bin/env bash
# Builds pushgate's own image for every arch that scripts/build-release.sh left
# in dist/ (x86_64, aarch64), saves each as an OCI archive, and publishes them
# as one multi-arch list with the static pushgate of this machine's arch: the
# tool releases itself the way release jobs use it.
#
#   scripts/publish-image.sh --repo REGISTRY/REPO [--tag TAG]... [--dist DIR] [PUSH FLAGS]
#
# TAG defaults to the version `pushgate --version` reports. Flags this script
# does not know go to `pushgate push` (--authfile, --tls-verify=false,
# --cert-dir, --json, ...). FROM scratch: the builds pull nothing, and an arm64
# image is built on an amd64 machine without emulation (nothing runs in it).
#
# tests/it/image.rs does the same round trip in CI with the debug binary at hand.
set -euo pipefail
cd "$(dirname "$0")/.."

dist=dist
repo=""
tags=()
push_flags=()
while (($#)); do
    case "$1" in
    --repo) repo="${2:?--repo needs REGISTRY/REPO}"; shift 2 ;;
    --repo=*) repo="${1#--repo=}"; shift ;;
    --tag) tags+=("${2:?--tag needs a tag}"); shift 2 ;;
    --tag=*) tags+=("${1#--tag=}"); shift ;;
    --dist) dist="${2:?--dist needs a directory}"; shift 2 ;;
    --dist=*) dist="${1#--dist=}"; shift ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) push_flags+=("$1"); shift ;;
    esac
done
if [ -z "$repo" ]; then
    echo "publish-image.sh: --repo REGISTRY/REPO is required" >&2
    exit 2
fi

host_arch=$(uname -m)
pushgate="$dist/$host_arch/pushgate"
if [ ! -x "$pushgate" ]; then
    echo "publish-image.sh: $pushgate not found: run scripts/build-release.sh first" >&2
    exit 1
fi
if ((${#tags[@]} == 0)); then
    tags=("$("$pushgate" --version | head -n1 | awk '{print $2}')")
fi

# Throwaway vfs storage: no daemon, nothing of the machine's own storage touched.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
podman() {
    command podman --storage-driver vfs --root "$work/storage" --runroot "$work/run" "$@"
}

images=()
for dir in "$dist"/*/; do
    arch=$(basename "$dir")
    case "$arch" in
    x86_64) platform=linux/amd64 ;;
    aarch64) platform=linux/arm64 ;;
    *) echo "publish-image.sh: $dir: unknown arch $arch, left out" >&2; continue ;;
    esac
    (cd "$dir" && sha256sum --quiet --check SHA256SUMS) || {
        echo "publish-image.sh: $dir does not match its SHA256SUMS" >&2
        exit 1
    }
    podman build --quiet --network none --platform "$platform" \
        --tag "localhost/pushgate:$arch" --file Containerfile "$dir" >/dev/null
    podman save --quiet --format oci-archive --output "$work/pushgate-$arch.ociarchive" \
        "localhost/pushgate:$arch"
    images+=(--image "oci-archive:$work/pushgate-$arch.ociarchive")
    echo "built the $platform image from $dir" >&2
done

tag_flags=()
for t in "${tags[@]}"; do tag_flags+=(--tag "$t"); done
"$pushgate" push --repo "$repo" "${tag_flags[@]}" "${images[@]}" "${push_flags[@]}"
