#!/usr/bin/env bash
# The main job: build, run the CPU reference self-check, then on a Hopper GPU the benchmark and
# the overlap demo (GEMM + combine through the signals). Without a Hopper GPU it says so and
# exits non-zero after the self-check. Arguments go to the benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
# Quiet on success; on failure the step's whole output (compiler errors go to stdout).
quietly() {
  local log
  log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    echo "signalgemm: $* failed" >&2
    exit 1
  fi
  rm -f "$log"
}
quietly scripts/setup.sh
quietly scripts/build.sh
build/bench/signalgemm-selfcheck
if ! nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | grep -q "^9\.0"; then
  echo "signalgemm: a Hopper GPU (H100/H200, sm_90) is required for the benchmark; none found." >&2
  exit 2
fi
build/bench/signalgemm-bench "$@"
exec build/bench/signalgemm-demo --svg build/overlap_timeline.svg
