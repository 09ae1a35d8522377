"""Shared fixtures: the tiny random model, the real data directory, test-wide environment.

Tests never reach a model or data hub (HF_HUB_OFFLINE=1). Torch runs single-threaded in fast tests: on these
2-core machines two OpenMP threads were ~25x slower for a tiny model when the other core was busy.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``../shared/data`` beside the repo (benchmark JSONL files; never copied into the repo)."""
    if not SHARED_DATA.exists():
        pytest.fail(f"{SHARED_DATA} is missing: the benchmark files must sit in ../shared/data beside the repo")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Llama + ChatML tokenizer saved as an HF checkpoint directory."""
    from tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))
