#!/usr/bin/env bash
# Installs everything maskcheck builds and tests with, idempotently: Debian packages with apt-get
# (only when one is missing) and the pinned Python wheels (ci/requirements.txt: torch, ggml's
# libggml-python, ...) into a virtual environment under the cache directory (rebuilt only when the
# pins change).
#
# Source it (". ci/setup.sh") to get the environment (CMAKE_PREFIX_PATH with LibTorch, ggml_DIR,
# CUDACXX) in the calling shell, or run it to install and print the exports.
#   MASKCHECK_CACHE   cache directory (default: ${XDG_CACHE_HOME:-$HOME/.cache}/maskcheck)
#   MASKCHECK_NO_TORCH=1  skip the Python wheels (builds without the LibTorch and ggml adapters and
#     peers)
#   MASKCHECK_SETUP_TESTS=1  also what only the tests need: headless Chromium and its WebDriver
#     (the report's browser test), clang and libFuzzer (the fuzz targets); ci/test.sh and
#     ci/fuzz.sh set it, the main job pulls neither
_mc_setup() {
  set -euo pipefail
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  local cache=${MASKCHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/maskcheck}
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

  local packages=(cmake ninja-build g++ git python3 python3-venv
    libgtest-dev libgmock-dev libbenchmark-dev librapidcheck-dev libfmt-dev
    nlohmann-json3-dev libcli11-dev libhwy-dev libdlpack-dev libre2-dev pkg-config)
  if [ "${MASKCHECK_SETUP_TESTS:-0}" = 1 ]; then
    # The report's browser test (reports/tests/browser_test.py): Chromium, its WebDriver, and a
    # font, since the browser is installed without its recommended packages.
    packages+=(chromium chromium-driver fonts-dejavu-core)
    # The fuzz targets (suite/fuzz): clang with libFuzzer and the sanitizer runtimes.
    packages+=(clang libclang-rt-14-dev)
  fi
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi

  if [ "${MASKCHECK_NO_TORCH:-0}" != 1 ]; then
    local venv="$cache/venv"
    local stamp="$venv/.maskcheck-requirements"
    if [ ! -x "$venv/bin/python" ] || ! cmp -s "$root/ci/requirements.txt" "$stamp"; then
      echo "setup: installing Python wheels into $venv" >&2
      mkdir -p "$cache"
      python3 -m venv "$venv" >&2
      "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$root/ci/requirements.txt" >&2
      cp "$root/ci/requirements.txt" "$stamp"
    fi
    local torch_prefix
    torch_prefix=$("$venv/bin/python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
    export CMAKE_PREFIX_PATH="$torch_prefix${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
    # ggml's CMake package is in the libggml package directory, under lib64/cmake/ggml, which
    # Debian's CMake does not search below a prefix (no lib64 paths): name it directly.
    ggml_DIR=$("$venv/bin/python" -c \
      'import libggml, os; print(os.path.join(os.path.dirname(libggml.__file__), "lib64/cmake/ggml"))')
    export ggml_DIR
    export MASKCHECK_PYTHON="$venv/bin/python"
  fi
  if [ -z "${CUDACXX:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
    export CUDACXX=/usr/local/cuda/bin/nvcc
  fi
  # LibTorch's CMake config prints a warning per unset architecture list; name them once.
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-"8.0;9.0"}
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  _mc_setup
  echo "export CMAKE_PREFIX_PATH=\"${CMAKE_PREFIX_PATH:-}\""
  [ -n "${ggml_DIR:-}" ] && echo "export ggml_DIR=\"$ggml_DIR\""
  [ -n "${CUDACXX:-}" ] && echo "export CUDACXX=\"$CUDACXX\""
  echo "export TORCH_CUDA_ARCH_LIST=\"$TORCH_CUDA_ARCH_LIST\""
else
  # Sourced: leave the caller's shell options (errexit, nounset, pipefail) as they were. They are
  # read here, not in a command substitution: bash resets errexit in $(...), so `$(set +o)` would
  # restore errexit as off and let a calling script run on past a failing command.
  _mc_saved_flags=$-
  _mc_saved_pipefail=0
  if shopt -qo pipefail; then _mc_saved_pipefail=1; fi
  _mc_setup
  case $_mc_saved_flags in *e*) set -e ;; *) set +e ;; esac
  case $_mc_saved_flags in *u*) set -u ;; *) set +u ;; esac
  if [ "$_mc_saved_pipefail" = 1 ]; then set -o pipefail; else set +o pipefail; fi
  unset _mc_saved_flags _mc_saved_pipefail
fi
