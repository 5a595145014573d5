#!/usr/bin/env bash
# The test command: set up, build, run every C++ test (GPU tests skip, saying so, without a Hopper
# GPU), build a small project against the installed CMake package, then install the Python
# module into build-venv and run its tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/cuda/bin:$PATH"
scripts/setup.sh
scripts/build.sh
(cd build && ctest --output-on-failure -j 2 --no-tests=error)  # none built (no GoogleTest): a failure

echo "== find_package(signalgemm) from an install prefix"
rm -rf build/install build/package_consumer
cmake --install build --prefix build/install >/dev/null
cmake -S examples/package_consumer -B build/package_consumer -G Ninja \
  -DCMAKE_PREFIX_PATH="$PWD/build/install" -DCMAKE_CUDA_COMPILER="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" >/dev/null
cmake --build build/package_consumer >/dev/null
build/package_consumer/package_consumer
[[ ! -x build/package_consumer/ep_consumer ]] || build/package_consumer/ep_consumer

echo "== Python module (pip install ., pytest; GPU tests skip without torch and a Hopper GPU)"
[[ -x build-venv/bin/python ]] || python3 -m venv build-venv
build-venv/bin/pip install -q numpy==2.4.6 pytest==9.2.0 nanobind==2.9.2 scikit-build-core==0.11.6
CUDACXX=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc) build-venv/bin/pip install -q --no-build-isolation .
(cd python/tests && ../../build-venv/bin/python -m pytest -q -rs)
