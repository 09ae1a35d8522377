"""What an eval summary records besides the scores, as lighteval's ``config_general`` does: which weights were
evaluated (a revision), in which dtype, when the run started and ended, and the exact prompt of the first problem.

Revision: the hub commit when the checkpoint came from the hub (transformers' ``config._commit_hash``, or a
``snapshots/<commit>`` directory of the hub cache); otherwise a hash of the weight files' names, sizes and
modification times (``weights:<16 hex>``): cheap for a 140 GB checkpoint, and it changes whenever the weights
are rewritten (it does not prove two copies are byte-identical). A served model (``openai``) has none we can see.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def now_utc() -> str:
    """ISO 8601 in UTC, to the second (``2025-07-01T12:00:00+00:00``)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _local_path(policy, model: str) -> Path | None:
    from ..models import ALIASES, cache_root

    for candidate in (getattr(policy, "model_path", None), model):
        if candidate and Path(str(candidate)).exists():
            return Path(str(candidate))
    if model in ALIASES and (cache_root() / "models" / model).is_dir():
        return cache_root() / "models" / model  # the alias's converted checkpoint
    return None


def model_revision(policy, model: str) -> tuple[str | None, str]:
    """``(revision, how it was found)`` for the weights ``policy`` serves (see module doc)."""
    from ..io import stable_hash

    config = getattr(getattr(policy, "model", None), "config", None)
    commit = getattr(config, "_commit_hash", None)
    if isinstance(commit, str) and commit:
        return commit, "hub commit"
    path = _local_path(policy, model)
    if path is None:
        return None, "unknown (a served or remote model)"
    parts = path.resolve().parts
    if "snapshots" in parts[:-1] and _COMMIT.match(parts[parts.index("snapshots") + 1]):
        return parts[parts.index("snapshots") + 1], "hub commit"  # .../models--org--name/snapshots/<commit>
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    if not files:
        return None, f"unknown (no weight files in {path})"
    stats = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return f"weights:{stable_hash('weights', stats)[:16]}", "hash of weight file names, sizes and mtimes"


def model_dtype(policy) -> str | None:
    """The dtype (or quantization) the backend runs the model in: hf ``float32``, llamacpp ``q8_0``, ct2
    ``int8``; None when the server decides (``openai``)."""
    model = getattr(policy, "model", None)
    dtype = getattr(model, "dtype", None) if model is not None else None
    if dtype is not None:
        return str(dtype).replace("torch.", "")
    value = getattr(policy, "dtype", None)
    return str(value) if value is not None else None


def run_metadata(policy, model: str, first_prompt: dict[str, Any] | None) -> dict[str, Any]:
    """The summary fields of this module: ``model_revision``, ``model_revision_source``, ``dtype``,
    ``first_prompt`` (``{"dataset", "problem_id", "prompt"}``: the text sent to the backend)."""
    revision, source = model_revision(policy, model)
    return {"model_revision": revision, "model_revision_source": source, "dtype": model_dtype(policy),
            "first_prompt": first_prompt}
