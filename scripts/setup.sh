#!/usr/bin/env bash
# Installs what building and testing SignalGEMM needs, from the package registries, pinned.
# Idempotent: anything already at the pinned version is left alone. The CUDA 13.0 toolkit
# (nvcc, CCCL, cuBLASLt) is a prerequisite of the machine, checked here, not installed.
set -euo pipefail

APT_PACKAGES=(
  "cmake=3.25.1-1"
  "ninja-build=1.11.1-2~deb12u1"
  "libgtest-dev=1.12.1-0.2"
  "googletest=1.12.1-0.2"
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  name=${pkg%%=*}
  version=${pkg#*=}
  installed=$(dpkg-query -W -f='${Version}' "$name" 2>/dev/null || true)
  [[ "$installed" == "$version" ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if ! command -v apt-get >/dev/null; then
    echo "setup: missing ${missing[*]} and no apt-get to install them" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

NVCC=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
if [[ ! -x "$NVCC" ]]; then
  echo "setup: nvcc (CUDA 13.0 toolkit) not found; install the CUDA toolkit first" >&2
  exit 1
fi
"$NVCC" --version | grep -q "release 13\." || { echo "setup: CUDA 13 toolkit required" >&2; exit 1; }
echo "setup: ok"
