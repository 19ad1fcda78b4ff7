#!/usr/bin/env bash
# Long runs that CI makes only small versions of. Bounded by their arguments.
#
#   scripts/soak.sh big-layer [SEEDS] [MIB] [RATE]
#       one layer of MIB MiB (default 1024) pushed through the fault proxy's
#       seeded mix failing RATE of the requests (default 0.1: 503, 429, resets
#       before and after the write, cut answers), once per seed 1..SEEDS
#       (default 10), in 16 MiB chunks (~70 requests, so every seed meets
#       faults): each must land in one run. CI runs the same test with 256 MiB
#       in 16 MiB chunks at 20 %, two seeds.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-}"
case "$mode" in
big-layer)
    seeds="${2:-10}"
    mib="${3:-1024}"
    rate="${4:-0.1}"
    scripts/setup.sh
    PUSHGATE_BIG_LAYER_MIB="$mib" \
        PUSHGATE_BIG_LAYER_CHUNK_MIB=16 \
        PUSHGATE_BIG_LAYER_FAULTS="$rate" \
        PUSHGATE_BIG_LAYER_SEEDS="$(seq -s, 1 "$seeds")" \
        cargo test --locked --test it -- --exact \
        transfers::a_big_layer_lands_in_one_run_through_a_link_that_fails_often
    ;;
*)
    sed -n '2,11p' "$0" >&2
    exit 2
    ;;
esac
