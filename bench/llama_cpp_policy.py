"""A bench-only Policy on llama-cpp-python's in-process ``Llama`` (for bench/engines.py's comparison).

llama-cpp-python's high-level API decodes one sequence at a time (its batched low-level API would need a
decoder of our own), so this arm shows what llama.cpp gives per sequence on the same requests. Log-probs are
not requested (they need ``logits_all=True``, which slows decoding); the arm measures speed only.
"""

from __future__ import annotations

from astro_reasoner.backends.tokenizing import PromptTokenizer, load_tokenizer
from astro_reasoner.models import ALIASES, _alias_gguf, resolve_model
from astro_reasoner.types import Completion, GenParams


class LlamaCppPolicy:
    name = "llama-cpp-python"
    deterministic = True

    def __init__(self, model: str, threads: int = 1):
        from llama_cpp import Llama

        gguf = _alias_gguf(model) if model in ALIASES else model
        self.prompts = PromptTokenizer(load_tokenizer(resolve_model(model)))
        self.llm = Llama(model_path=str(gguf), n_ctx=2048, n_threads=threads, n_threads_batch=threads,
                         verbose=False)

    def apply_chat_template(self, messages, continue_text=""):
        return self.prompts.apply_chat_template(messages, continue_text)

    def count_tokens(self, text):
        return self.prompts.count_tokens(text)

    def close(self):
        self.llm = None

    def generate(self, prompts, params: GenParams):
        out = []
        for i, prompt in enumerate(prompts):
            ids = self.prompts.encode_prompt(prompt)
            row = []
            for j in range(params.n):
                seed = None if params.seed is None else (params.seed + 1000 * i + j) % 2 ** 31
                r = self.llm.create_completion(ids, max_tokens=params.max_tokens, temperature=params.temperature,
                                               top_p=params.top_p, top_k=0, min_p=0.0, repeat_penalty=1.0,
                                               stop=list(params.stop) or None, seed=seed)
                choice = r["choices"][0]
                reason = "length" if choice["finish_reason"] == "length" else "stop"
                row.append(Completion(text=choice["text"], tokens=r["usage"]["completion_tokens"], logprob_sum=0.0,
                                      finish_reason=reason, prompt_tokens=len(ids)))
            out.append(row)
        return out
