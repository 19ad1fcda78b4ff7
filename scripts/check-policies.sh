#!/usr/bin/env bash
# CI gate for the shipped policies: for every policy crate in policies/*/,
#   pushgate policy check MODULE               (contract, imports, metadata, sample
#                                               settings, built-in corpus, determinism)
#   pushgate policy test MODULE policies/NAME/cases --junit DIR/NAME.xml
# Every policy is checked and tested even when an earlier one has problems; the
# script exits 1 if any of them had one.
#
# Environment:
#   PUSHGATE   the pushgate binary to use [default: built here with cargo]
#   JUNIT_DIR  where the JUnit files go [default: policies/target/junit]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/build-policies.sh >/dev/null
if [ -z "${PUSHGATE:-}" ]; then
    cargo build --quiet --locked --bin pushgate
    PUSHGATE="${CARGO_TARGET_DIR:-target}/debug/pushgate"
fi
junit_dir="${JUNIT_DIR:-policies/target/junit}"
mkdir -p "$junit_dir"

problems=()
found=0
for crate in policies/*/; do
    crate="${crate%/}"
    [ -f "$crate/Cargo.toml" ] || continue
    found=$((found + 1))
    name="$(basename "$crate")"
    package="$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$crate/Cargo.toml" | head -n 1)"
    module="policies/target/wasm32-wasip2/release/${package//-/_}.wasm"
    echo "== $name ($module)"
    if [ ! -f "$module" ]; then
        echo "no module: the build did not produce $module"
        problems+=("$name: no module")
        continue
    fi
    if ! "$PUSHGATE" policy check "$module"; then
        problems+=("$name: policy check")
    fi
    if [ ! -d "$crate/cases" ]; then
        echo "no cases: every policy ships cases in $crate/cases/"
        problems+=("$name: no cases")
        continue
    fi
    if ! "$PUSHGATE" policy test "$module" "$crate/cases" --junit "$junit_dir/$name.xml"; then
        problems+=("$name: policy test")
    fi
done

if [ "$found" -eq 0 ]; then
    echo "no policy crates in policies/" >&2
    exit 1
fi
if ((${#problems[@]})); then
    echo "policy problems:" >&2
    printf '  %s\n' "${problems[@]}" >&2
    exit 1
fi
echo "all $found policies check and pass their cases (JUnit in $junit_dir)"
