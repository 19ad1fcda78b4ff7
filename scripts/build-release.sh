#!/usr/bin/env bash
# Builds a release of pushgate for CI pods: a static binary (musl, no libc to
# find at run time), the shipped policy modules beside it, CA roots for the
# image, and a SHA256SUMS over them, in dist/ARCH/. That directory is also the
# build context of the Containerfile (pushgate's own image). The man pages,
# one per command (pushgate.1, pushgate-push.1, pushgate-policy-test.1, ...),
# go to dist/man/, written by the binary itself (`pushgate man --out-dir`).
#
#   scripts/build-release.sh [--target TRIPLE] [--out DIR]
#
# TRIPLE defaults to x86_64-unknown-linux-musl; aarch64-unknown-linux-musl is
# cross-built with Debian's gcc-aarch64-linux-gnu (see --help). DIR defaults to dist/.
#
# Not part of CI (.ci/run): a release build of wasmtime for a target with no
# build cache takes most of an hour on 2 cores. The image test (tests/it/image.rs)
# packages the debug binary at hand instead.
#
# What the musl build needs beyond rustup's target: ring (rustls's crypto)
# compiles C and assembly, so a C compiler for the target: Debian's musl-tools
# gives musl-gcc for x86_64; for aarch64, Debian's gcc-aarch64-linux-gnu serves
# both as ring's compiler (its code needs no libc headers of musl's) and as the
# linker, since rustc links musl targets with its own self-contained musl (crt
# objects, libc.a) and gives the linker no default libraries. TLS roots: the
# image carries ca-certificates.crt, and pushgate falls back to its compiled-in
# Mozilla roots where a system has none.
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-musl
out=dist
usage() {
    cat <<'EOF'
usage: scripts/build-release.sh [--target TRIPLE] [--out DIR]

  --target x86_64-unknown-linux-musl   (default) needs musl-tools (musl-gcc), installed here
  --target aarch64-unknown-linux-musl  cross-built with Debian's gcc-aarch64-linux-gnu,
        installed here, as ring's C compiler and as the linker; another cross compiler
        (e.g. a musl-cross-make aarch64-linux-musl-gcc) is taken from
        CC_aarch64_unknown_linux_musl and CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER
        (or build natively on an arm64 machine, with its musl-tools).
  --out DIR   where dist/ARCH/ and dist/man/ go (default dist)
EOF
}
while (($#)); do
    case "$1" in
    --target) target="${2:?--target needs a triple}"; shift 2 ;;
    --target=*) target="${1#--target=}"; shift ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --out=*) out="${1#--out=}"; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "build-release.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done

case "$target" in
x86_64-unknown-linux-musl) arch=x86_64 cc=musl-gcc strip=strip ;;
aarch64-unknown-linux-musl)
    arch=aarch64
    cc="${CC_aarch64_unknown_linux_musl:-aarch64-linux-gnu-gcc}"
    strip="${cc%gcc}strip"
    ;;
*) echo "build-release.sh: --target $target: only x86_64- and aarch64-unknown-linux-musl are supported" >&2; exit 2 ;;
esac

# What the build needs, installed as scripts/setup.sh does.
need=()
if [ "$target" = x86_64-unknown-linux-musl ] && ! command -v musl-gcc >/dev/null; then
    need+=(musl-tools)
fi
if [ "$cc" = aarch64-linux-gnu-gcc ] && ! command -v "$cc" >/dev/null; then
    need+=(gcc-aarch64-linux-gnu)
fi
[ -r /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
if ((${#need[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! command -v "$cc" >/dev/null; then
    echo "build-release.sh: $cc (a C compiler for $target, for ring) is not on PATH" >&2
    usage >&2
    exit 1
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target"
# Said explicitly rather than left to cc-rs's guess (which would look for
# aarch64-linux-musl-gcc).
triple_var="${target//-/_}"
export "CC_${triple_var}=${cc}"
if [ "$target" = aarch64-unknown-linux-musl ]; then
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER="${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER:-$cc}"
fi

cargo build --release --locked --target "$target" --bin pushgate
target_dir="${CARGO_TARGET_DIR:-target}"
bin="$target_dir/$target/release/pushgate"
# Static means no program interpreter and no shared libraries to find.
if command -v readelf >/dev/null && readelf -l "$bin" | grep -q 'Requesting program interpreter'; then
    echo "build-release.sh: $bin is dynamically linked; a static musl build was expected" >&2
    exit 1
fi

scripts/build-policies.sh >/dev/null

dir="$out/$arch"
rm -rf "$dir"
mkdir -p "$dir/policies"
# Without its symbol tables (a third of the file); a failure to strip keeps them.
"$strip" -o "$dir/pushgate" "$bin" 2>/dev/null || cp "$bin" "$dir/pushgate"
cp policies/target/wasm32-wasip2/release/*.wasm "$dir/policies/"
# The roots the image trusts (pushgate's bundled ones are only the fallback).
cp /etc/ssl/certs/ca-certificates.crt "$dir/ca-certificates.crt"
(cd "$dir" && find . -type f ! -name SHA256SUMS | sed 's|^\./||' | LC_ALL=C sort |
    xargs sha256sum >SHA256SUMS)

# The man pages are the same for every arch, written by the binary just built,
# or for a cross build (which would not run here) by a debug build for this host.
rm -rf "$out/man"
if [ "$arch" = "$(uname -m)" ]; then
    "$bin" man --out-dir "$out/man" >/dev/null
else
    cargo run --locked --quiet --bin pushgate -- man --out-dir "$out/man" >/dev/null
fi

echo "$dir:"
(cd "$dir" && cat SHA256SUMS)
echo "$out/man: $(cd "$out/man" && ls | tr '\n' ' ')"
case "$arch" in x86_64) platform=linux/amd64 ;; aarch64) platform=linux/arm64 ;; esac
cat <<EOF

The image (FROM scratch, so the build pulls nothing), every arch of $out/ in one
list, published by pushgate itself:
  scripts/publish-image.sh --dist $out --repo REGISTRY/pushgate --tag latest
which does, per arch:
  podman build --platform $platform -f Containerfile -t pushgate:$arch $dir
  podman save --format oci-archive -o pushgate-$arch.ociarchive pushgate:$arch
EOF
