#!/usr/bin/env bash
# Builds the shipped policy modules (and, with --tests, the hostile modules the
# tests use) as wasm32-wasip2 components.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each workspace builds into its own target/ so that the modules are found at a
# fixed path whatever CARGO_TARGET_DIR the host build uses.
CARGO_TARGET_DIR=policies/target \
    cargo build --quiet --release --locked --target wasm32-wasip2 --manifest-path policies/Cargo.toml
if [ "${1:-}" = "--tests" ]; then
    CARGO_TARGET_DIR=tests/policies/target \
        cargo build --quiet --release --locked --target wasm32-wasip2 --manifest-path tests/policies/Cargo.toml
fi
ls policies/target/wasm32-wasip2/release/*.wasm
