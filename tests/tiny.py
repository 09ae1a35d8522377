"""A tiny random Llama and a tiny byte-level BPE tokenizer with a ChatML template, built in-process.

Fast tests use it instead of a real model: same code paths (transformers, TRL, our backends), seconds to
build, nothing downloaded. Its outputs are random text, so tests assert on mechanics, not on quality.
"""

from __future__ import annotations

from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "Solve the following math problem step by step. Separate the steps with a blank line.",
    "Put the final answer in \\boxed{} at the end of the last step.",
    "Tom has 3 boxes with 4 apples in each box. He eats 2 apples. How many apples are left?",
    "There are 3 boxes with 4 apples each, so Tom has 3 * 4 = 12 apples.\n\n",
    "He eats 2 apples, so 12 - 2 = 10 apples are left.\n\nThe answer is \\boxed{10}.",
    "But wait, are we solving the problem correctly so far? Hmm, I think I made a mistake.",
    "Let's go back to where we computed the total and try a different approach.",
    "0 1 2 3 4 5 6 7 8 9 10 + - * / = ( ) { } $ . , ? ! : ; \\frac \\sqrt x y z",
    "You are a helpful assistant that solves math problems carefully.",
]


def build_tiny_model(out_dir: str | Path, *, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """Write a tiny random ``LlamaForCausalLM`` + tokenizer to ``out_dir`` and return it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(_CORPUS * 4, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                  pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    tok.chat_template = CHATML_TEMPLATE
    tok.save_pretrained(out)

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=2048, tie_word_embeddings=True,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(cfg)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    return out
