#!/usr/bin/env bash
# The test command: set up, build, run every test (GPU tests skip, saying so, without a Hopper
# GPU), then build a small project against the installed CMake package.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
(cd build && ctest --output-on-failure -j 2)

echo "== find_package(signalgemm) from an install prefix"
rm -rf build/install build/package_consumer
cmake --install build --prefix build/install >/dev/null
cmake -S examples/package_consumer -B build/package_consumer -G Ninja \
  -DCMAKE_PREFIX_PATH="$PWD/build/install" -DCMAKE_CUDA_COMPILER="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" >/dev/null
cmake --build build/package_consumer >/dev/null
build/package_consumer/package_consumer
