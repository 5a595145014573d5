#!/usr/bin/env bash
# Installs what building and testing SignalGEMM needs, from the package registries, pinned.
# Idempotent: anything already at the pinned version is left alone. The CUDA 13.0 toolkit
# (nvcc, CCCL, cuBLASLt) is a prerequisite of the machine, checked here, not installed.
set -euo pipefail

# Pinned for Debian 12 (bookworm), the CI image; another distribution's archive lacks these versions.
APT_PACKAGES=(
  "cmake=3.25.1-1"
  "ninja-build=1.11.1-2~deb12u1"
  "libgtest-dev=1.12.1-0.2"
  "googletest=1.12.1-0.2"
  "python3-venv=3.11.2-1+b1"  # scripts/test.sh's build-venv
  "python3-dev=3.11.2-1+b1"   # Python.h, for the nanobind module
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
  if ! grep -q '^VERSION_CODENAME=bookworm' /etc/os-release 2>/dev/null; then
    # Elsewhere the pins do not exist: go on with the tools installed, if there are any.
    cmake_version=$(cmake --version 2>/dev/null | head -1 | grep -o '[0-9][0-9.]*' || true)
    if [[ -z "$cmake_version" ]] || ! printf '3.25\n%s\n' "$cmake_version" | sort -V -C || ! command -v ninja >/dev/null; then
      echo "setup: not Debian 12, whose versions are pinned here: install cmake >= 3.25, ninja, GoogleTest and" \
        "python3 with venv and headers by other means" >&2
      exit 1
    fi
    echo "setup: not Debian 12: using cmake $cmake_version and the tools installed (pins: ${missing[*]})" >&2
  else
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

NVCC=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
if [[ ! -x "$NVCC" ]]; then
  echo "setup: nvcc (CUDA 13.0 toolkit) not found; install the CUDA toolkit first" >&2
  exit 1
fi
"$NVCC" --version | grep -q "release 13\." || { echo "setup: CUDA 13 toolkit required" >&2; exit 1; }
echo "setup: ok"
