#!/usr/bin/env bash
# Installs what only the test suite needs, idempotently:
#  - Debian's chromium + chromium-driver for the tree-viewer browser test.
# The server tests need no extra: they run llama.cpp's C++ `llama-server`, which `make setup` already builds
# (scripts/build_llama_server.sh), so the llama-cpp-python wheel (a ~6-minute compile) is not installed here.
set -euo pipefail
PY=${1:-.venv/bin/python}  # kept for the Makefile's call; unused now

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "warning: chromium not installed and not root; browser tests will fail" >&2
  fi
fi
