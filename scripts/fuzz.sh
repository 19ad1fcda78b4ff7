#!/usr/bin/env bash
# Runs every fuzz target (the `fuzz::` tests: src/fuzz/ and the `mod fuzz` of
# the modules whose parsers are private) for about DURATION in all, e.g.
#   scripts/fuzz.sh 30m        (also 90s, 2h; default 10m)
# Targets replay tests/corpus/<target>/ first, then mutate it. An input that
# breaks a property is saved there as regress-<sha256>: commit it with the fix,
# and every later test run replays it. PUSHGATE_FUZZ_SEED=N repeats a run.
# Debug build, as scripts/test.sh uses: no second build of wasmtime.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10m}"
case "$duration" in
  *h) secs=$(( ${duration%h} * 3600 )) ;;
  *m) secs=$(( ${duration%m} * 60 )) ;;
  *s) secs=${duration%s} ;;
  *[!0-9]*|'') echo "usage: scripts/fuzz.sh [DURATION: 90s, 30m, 2h]" >&2; exit 2 ;;
  *) secs=$duration ;;
esac
threads="${PUSHGATE_FUZZ_THREADS:-$(nproc)}"
cargo test --lib --locked --no-run -q
targets=$(cargo test --lib --locked -q -- --list fuzz:: 2>/dev/null | grep -c ': test$')
# Targets run $threads at a time, each for an equal share of the time.
per=$(( secs * threads / targets ))
(( per >= 1 )) || per=1
echo "fuzz: $targets targets, ${per}s each, $threads at a time (~${secs}s)" >&2
status=0
PUSHGATE_FUZZ_SAVE=1 PUSHGATE_FUZZ_SECONDS="$per" \
  cargo test --lib --locked -q -- --test-threads="$threads" fuzz:: || status=$?
new=$(git status --porcelain --untracked-files=all -- tests/corpus | grep regress- || true)
if [[ -n "$new" ]]; then
  echo "fuzz: inputs that break a property, kept as regressions (fix, then commit them):" >&2
  echo "$new" >&2
fi
exit "$status"
