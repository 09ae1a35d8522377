"""Model shapes and memory arithmetic for ``astro pipeline --plan`` (pipeline/plan.py); nothing is loaded.

- shapes: config.json of a local checkpoint or of the local Hugging Face cache, else ``KNOWN`` (the models our
  configs name); the Llama formula turns them into a parameter count;
- activations of one micro-batch padded to its maximum length: checkpointed layer inputs + one recomputed layer
  (~17 values per token and hidden unit for a Llama layer, cf. Korthikanti et al. 2022) + the logits (SFT's loss
  also holds an fp32 copy and its gradient);
- inference: bf16 weights 2 B/param / tensor parallel + the KV cache of one full-length sequence (vLLM refuses to
  start without room for one; whatever else it reserves becomes KV cache for concurrent sequences).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

GB = 2 ** 30  # GiB: an "80GB" A100/H100 holds 80 GiB
RESERVED_GB = 2.0  # per GPU: CUDA context and allocator slack, never available to tensors
PROMPT_TOKENS = 1024  # prompt allowance on top of the generated tokens (MATH-style prompts are shorter)
VLLM_UTILIZATION = 0.9  # vLLM's default --gpu-memory-utilization

# config.json fields: hidden, intermediate, layers, attention heads, KV heads, vocabulary, tied embeddings, context.
_LLAMA_8B = (4096, 14336, 32, 32, 8, 128256, False, 131072)
_LLAMA_70B = (8192, 28672, 80, 64, 8, 128256, False, 131072)
_SMOLLM2_135M = (576, 1536, 30, 9, 3, 49152, True, 8192)
KNOWN = MappingProxyType({
    "smollm2-135m": _SMOLLM2_135M, "HuggingFaceTB/SmolLM2-135M-Instruct": _SMOLLM2_135M,
    "meta-llama/Llama-3.1-8B-Instruct": _LLAMA_8B, "meta-llama/Llama-3.1-8B": _LLAMA_8B,
    "meta-llama/Llama-3.1-70B-Instruct": _LLAMA_70B, "meta-llama/Llama-3.1-70B": _LLAMA_70B,
})


@dataclass(frozen=True)
class Arch:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool
    context: int
    source: str  # where the shapes came from (printed in the plan's header)

    @property
    def params(self) -> float:
        """Llama: embeddings (+ untied head), attention q/k/v/o, gated MLP, two norms per layer, final norm."""
        kv = self.kv_heads * (self.hidden // self.heads)
        layer = 2 * self.hidden * (self.hidden + kv) + 3 * self.hidden * self.intermediate + 2 * self.hidden
        return self.vocab * self.hidden * (1 if self.tied else 2) + self.layers * layer + self.hidden

    def kv_bytes(self, tokens: int, elem: int = 2) -> float:
        return 2 * self.layers * self.kv_heads * (self.hidden // self.heads) * elem * tokens


def architecture(model: str) -> Arch | None:
    """Shapes of ``model`` from a config.json on disk, else from ``KNOWN``; None when neither has it."""
    from ..models import ALIASES, cache_root

    hub_id = ALIASES[model].hub_id if model in ALIASES else model
    paths = [Path(model).expanduser() / "config.json", cache_root() / "models" / model / "config.json"]
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(hub_id, "config.json")  # looks in the local cache only
        paths += [Path(cached)] if isinstance(cached, str) else []
    except (ImportError, ValueError):  # ValueError: not a repo id
        pass
    for path in (p for p in paths if p.is_file()):
        c = json.loads(path.read_text())
        return Arch(c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["num_attention_heads"],
                    c.get("num_key_value_heads") or c["num_attention_heads"], c["vocab_size"],
                    bool(c.get("tie_word_embeddings", False)), int(c.get("max_position_embeddings", 4096)), str(path))
    known = KNOWN.get(model) or KNOWN.get(hub_id)
    return Arch(*known, source="known-model table") if known else None


def gb(x: float) -> str:
    return f"{x / GB:,.1f} GiB"


def vllm_need(arch: Arch, tp: int, context: int) -> float:
    """Bytes per GPU vLLM needs to start: its weight shard, one sequence's KV shard, ~1 GiB activations/graphs."""
    return (2 * arch.params + arch.kv_bytes(context)) / tp + GB


def min_tp(arch: Arch, budget_gb: float, context: int) -> int | None:
    """Smallest power-of-two tensor parallel size (dividing the KV heads) that fits ``budget_gb`` per GPU."""
    return next((tp for tp in (1, 2, 4, 8, 16) if arch.kv_heads % tp == 0
                 and vllm_need(arch, tp, context) <= budget_gb * GB), None)


def activations(arch: Arch, tokens: int, elem: int, checkpointing: bool, sft: bool) -> float:
    layer = 17 * arch.hidden * elem  # one Llama layer's saved activations per token
    body = arch.layers * arch.hidden * elem + layer if checkpointing else arch.layers * layer
    return tokens * (body + arch.vocab * (elem + 8 if sft else 2 * elem))  # + logits (and SFT's fp32 loss copy)
