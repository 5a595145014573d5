#!/usr/bin/env bash
# Configures and builds SignalGEMM into ./build (incremental on later calls).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/cuda/bin:$PATH"
if [[ ! -f build/build.ninja ]]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="$(command -v nvcc)" "$@"
fi
cmake --build build -j "$(nproc)"
