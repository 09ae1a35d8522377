#!/usr/bin/env bash
# Installs what only the test suite needs, idempotently:
#  - llama-cpp-python[server]: a real OpenAI-compatible server for the `openai` backend's contract tests.
#    It compiles llama.cpp on install (minutes on 2 cores), so the built wheel is cached in
#    ~/.cache/astro-reasoner/wheels and reused by later runs on the same machine.
#  - Debian's chromium + chromium-driver for the tree-viewer browser test.
set -euo pipefail
PY=${1:-.venv/bin/python}
LLAMA_VERSION=0.3.36
WHEELS=${ASTRO_WHEEL_CACHE:-$HOME/.cache/astro-reasoner/wheels}

if ! "$PY" -c "import llama_cpp, llama_cpp.server" 2>/dev/null; then
  mkdir -p "$WHEELS"
  if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
    echo "building llama-cpp-python $LLAMA_VERSION (once; cached in $WHEELS)..."
    CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" "$PY" -m pip wheel -q --no-deps -w "$WHEELS" "llama-cpp-python==$LLAMA_VERSION"
  fi
  "$PY" -m pip install -q --find-links "$WHEELS" "llama-cpp-python[server]==$LLAMA_VERSION"
fi

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "warning: chromium not installed and not root; browser tests will fail" >&2
  fi
fi
