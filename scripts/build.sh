#!/usr/bin/env bash
# Configures and builds SignalGEMM into ./build (incremental on later calls).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/cuda/bin:$PATH"
if [[ ! -f build/build.ninja ]]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="$(command -v nvcc)" "$@"
fi
# ptxas says when it serializes a kernel's wgmmas (C7511, C7512, ...): a silent slowdown of 4-12%
# that a change far from the K loop can cause (2026-11-28: the fp16 output did, unseen for a session).
# The build fails on it; the log of the objects just compiled is in build/build.log.
cmake --build build -j "$(nproc)" 2>&1 | tee build/build.log
if grep -q "wgmma.mma_async instructions are serialized" build/build.log; then
  grep "wgmma.mma_async instructions are serialized" build/build.log | sed 's/^/  /' >&2
  echo "error: ptxas serialized the wgmmas of the kernels above (see build/build.log)" >&2
  exit 1
fi
