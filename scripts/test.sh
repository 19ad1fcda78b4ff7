#!/usr/bin/env bash
# Sets up and runs the whole test suite: formatting, lints, unit and integration
# tests (the integration tests start their own registries).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-policies.sh --tests
cargo fmt --all -- --check
cargo fmt --manifest-path policies/Cargo.toml --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The fuzz targets (src/fuzz/) replay their corpus, then mutate it for this
# long each: 29 targets, 23 s in all on 2 cores. scripts/fuzz.sh runs them longer.
export PUSHGATE_FUZZ_SECONDS="${PUSHGATE_FUZZ_SECONDS:-1.5}"
cargo test --workspace --all-targets --locked
# the policies' own rule tests, natively
cargo test --locked --manifest-path policies/Cargo.toml
scripts/check-policies.sh
# the benchmark as a smoke test: tiny sizes, every scenario once, no timing judged
scripts/bench.sh --small
