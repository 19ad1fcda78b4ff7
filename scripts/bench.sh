#!/usr/bin/env bash
# Benchmarks `pushgate push` against podman (what cosa runs), skopeo and the raw
# limit (curl), each against a local docker-registry; see BENCHMARKS.md.
#
#   scripts/bench.sh            full size (4 arches × 16 layers × 16 MiB, a 1 GiB layer),
#                               release build, 3 runs each; writes BENCHMARKS.md
#   scripts/bench.sh --small    smoke test for CI (2 arches × 4 layers × 256 KiB), one
#                               run each, debug build, nothing written; no timing asserted
#
# Other options go to the bench itself (`--runs N`, `--out FILE`, `--no-podman`,
# `--only sign,wan,layers`, `--wan-total MIB`, ...; see examples/bench.rs); with
# `--only`, BENCHMARKS.md is not written. BENCH_PROFILE=release|dev overrides the
# build profile.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"

small=0
out=0
for a in "$@"; do
    case "$a" in
    --small) small=1 ;;
    --out | --out=*) out=1 ;;
    --only | --only=*) out=1 ;; # a partial run must not replace the full results
    esac
done
profile="${BENCH_PROFILE:-$([ $small = 1 ] && echo dev || echo release)}"

scripts/setup.sh
# The policy modules are timed when they build; the rest is measured regardless.
if [ -f policies/Cargo.toml ] && ! scripts/build-policies.sh >/dev/null; then
    echo "bench: the policy modules did not build: policy cost is not measured" >&2
fi
cargo build --quiet --locked --profile "$profile" --bin pushgate --example bench
dir="$target/$([ "$profile" = dev ] && echo debug || echo "$profile")"

args=(--pushgate "$dir/pushgate" --command "scripts/bench.sh")
if [ $small = 0 ] && [ $out = 0 ]; then
    args+=(--out BENCHMARKS.md)
fi
exec "$dir/examples/bench" "${args[@]}" "$@"
