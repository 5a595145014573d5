#!/usr/bin/env bash
# The main job: build, run the CPU reference self-check, then the benchmark on a Hopper GPU.
# Without a Hopper GPU it says so and exits non-zero after the self-check.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
scripts/build.sh >/dev/null
build/bench/signalgemm-selfcheck
if ! nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | grep -q "^9\.0"; then
  echo "signalgemm: a Hopper GPU (H100/H200, sm_90) is required for the benchmark; none found." >&2
  exit 2
fi
exec build/bench/signalgemm-bench "$@"
