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
#   scripts/soak.sh kill [RUNS] [RATE] [FIRST-SEED]
#       RUNS (default 200) pushes of a 4-arch build through the fault proxy
#       failing RATE of the requests (default 0.2), each SIGKILLed at a seeded
#       point and rerun until it converges; every run must end exact (tags,
#       meta.json, nothing PUT twice, no lock or temp file left, a no-op after).
#       CI runs 2. The build: $PUSHGATE_SOAK_LAYERS layers (default 4) of
#       $PUSHGATE_SOAK_LAYER_KIB KiB (default 256) per arch, uploaded in chunks
#       of $PUSHGATE_SOAK_CHUNK_KIB KiB (default 64; CI: 2 of 64 KiB, whole).
#   scripts/soak.sh concurrent [ROUNDS] [PUSHES] [RATE]
#       ROUNDS (default 20) of PUSHES (default 8) pushes of one build started
#       at once (same workdir, same tags) through the fault proxy at RATE
#       (default 0.2); each round must end exact. CI runs one round of 8. The
#       build is kill's.
#   scripts/soak.sh all
#       kill and concurrent with their defaults.
# kill and concurrent print a summary table (tests/it/soak.rs says what is
# checked) and fail if a run was lost.
set -euo pipefail
cd "$(dirname "$0")/.."

soak_test() {
    cargo test --locked --test it -- --exact --nocapture "$1"
}

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
kill)
    scripts/setup.sh
    PUSHGATE_SOAK_LAYERS="${PUSHGATE_SOAK_LAYERS:-4}" \
        PUSHGATE_SOAK_LAYER_KIB="${PUSHGATE_SOAK_LAYER_KIB:-256}" \
        PUSHGATE_SOAK_CHUNK_KIB="${PUSHGATE_SOAK_CHUNK_KIB:-64}" \
        PUSHGATE_SOAK_RUNS="${2:-200}" \
        PUSHGATE_SOAK_FAULTS="${3:-0.2}" \
        PUSHGATE_SOAK_SEED="${4:-1}" \
        soak_test soak::killed_pushes_through_a_faulty_link_converge
    ;;
concurrent)
    scripts/setup.sh
    PUSHGATE_SOAK_LAYERS="${PUSHGATE_SOAK_LAYERS:-4}" \
        PUSHGATE_SOAK_LAYER_KIB="${PUSHGATE_SOAK_LAYER_KIB:-256}" \
        PUSHGATE_SOAK_CHUNK_KIB="${PUSHGATE_SOAK_CHUNK_KIB:-64}" \
        PUSHGATE_SOAK_ROUNDS="${2:-20}" \
        PUSHGATE_SOAK_PUSHES="${3:-8}" \
        PUSHGATE_SOAK_FAULTS="${4:-0.2}" \
        soak_test soak::concurrent_pushes_of_one_build_converge
    ;;
all)
    "$0" kill
    "$0" concurrent
    ;;
*)
    sed -n '2,27p' "$0" >&2
    exit 2
    ;;
esac
