#!/usr/bin/env bash
# Builds llama.cpp's C++ server (`llama-server`), the `llamacpp` backend's engine, once per machine.
#
# Source: the llama.cpp tree vendored in the pinned llama-cpp-python sdist from PyPI (only its source is used;
# no other network source is needed). The server tests run this binary too. Static build, AVX2/FMA/F16C
# kernels (GGML_NATIVE=OFF, so a binary cached on one machine of this kind runs on another), no curl/ssl.
# Installed as $ASTRO_CACHE/bin/llama-server (default ~/.cache/astro-reasoner/bin); later runs find it and
# return at once. Takes ~25-40 minutes on 2 cores the first time.
# Override the compiler flags with LLAMA_CMAKE_ARGS, e.g. LLAMA_CMAKE_ARGS="-DGGML_NATIVE=ON".
set -euo pipefail
PY=${1:-.venv/bin/python}
LLAMA_VERSION=0.3.36
CACHE=${ASTRO_CACHE:-$HOME/.cache/astro-reasoner}
BIN="$CACHE/bin/llama-server"
STAMP="$BIN.version"
WANT="llama-cpp-python-$LLAMA_VERSION ${LLAMA_CMAKE_ARGS:-portable-avx2}"

if [ -x "$BIN" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  exit 0
fi
for tool in cmake c++; do
  command -v "$tool" >/dev/null || { echo "error: building llama-server needs $tool (apt-get install cmake g++)" >&2; exit 1; }
done
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/llama-server-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
echo "building llama-server from llama-cpp-python $LLAMA_VERSION's llama.cpp (once; cached in $CACHE/bin)..."
"$PY" -m pip download -q --no-deps --no-binary :all: -d "$WORK" "llama-cpp-python==$LLAMA_VERSION"
tar xzf "$WORK"/llama_cpp_python-"$LLAMA_VERSION".tar.gz -C "$WORK"
SRC="$WORK/llama_cpp_python-$LLAMA_VERSION/vendor/llama.cpp"
# shellcheck disable=SC2086  # LLAMA_CMAKE_ARGS is a list of flags
cmake -S "$SRC" -B "$WORK/build" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
  ${LLAMA_CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON} >"$WORK/cmake.log" \
  || { tail -30 "$WORK/cmake.log" >&2; exit 1; }
cmake --build "$WORK/build" --target llama-server -j"$(nproc)" >"$WORK/build.log" 2>&1 \
  || { tail -40 "$WORK/build.log" >&2; exit 1; }
mkdir -p "$CACHE/bin"
install -m 755 "$WORK/build/bin/llama-server" "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
echo "$WANT" > "$STAMP"
"$BIN" --version 2>&1 | head -2
echo "llama-server installed: $BIN"
