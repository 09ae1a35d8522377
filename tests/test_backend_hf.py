"""The hf backend's own mechanics on the tiny model: raw log-probs, EOS handling, stop strings that must not
reach into the prompt, result order after length-sorting and chunking, and BOS handling."""

from __future__ import annotations

import math

import pytest
import torch

from astro_reasoner.backends import HFBackend, make_backend
from astro_reasoner.backends.hf import _StopOnStrings
from astro_reasoner.backends.tokenizing import PromptTokenizer
from astro_reasoner.types import GenParams

PROMPT = "<|im_start|>user\nTom has 3 boxes with 4 apples.<|im_end|>\n<|im_start|>assistant\nThere are"


@pytest.fixture(scope="module")
def tiny(tiny_model_dir) -> HFBackend:
    return make_backend("hf", str(tiny_model_dir), batch_size=3)


def _greedy_ids(policy: HFBackend, prompt: str, k: int) -> tuple[list[int], list[int]]:
    ids = policy.prompts.encode_prompt(prompt)
    with torch.no_grad():
        out = policy.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                    max_new_tokens=k, do_sample=False, eos_token_id=[],
                                    pad_token_id=policy.pad_id)
    return ids, out[0, len(ids):].tolist()


def test_logprob_sum_is_the_raw_model_logprob_of_the_sampled_tokens(tiny):
    ids, gen = _greedy_ids(tiny, PROMPT, 8)
    with torch.no_grad():
        logits = tiny.model(torch.tensor([ids + gen])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    expected = sum(logp[len(ids) - 1 + k, t].item() for k, t in enumerate(gen))
    tiny.eos_ids, saved = set(), tiny.eos_ids  # no EOS: exactly 8 tokens
    try:
        (c,), = tiny.generate([PROMPT], GenParams(max_tokens=8, temperature=0.0))
        # at temperature 0.5 the sampled tokens' probabilities are still reported under the raw model
        (hot,), = tiny.generate([PROMPT], GenParams(max_tokens=8, temperature=0.5, seed=3))
    finally:
        tiny.eos_ids = saved
    assert c.finish_reason == "length" and c.tokens == 8
    assert math.isclose(c.logprob_sum, expected, rel_tol=1e-4, abs_tol=1e-4)
    assert c.text == tiny.prompts.decode(gen)
    assert hot.logprob_sum < 0 and math.isfinite(hot.logprob_sum)


def test_eos_ends_a_row_and_is_counted_but_not_returned(tiny, monkeypatch):
    calls = []
    real_generate = tiny.model.generate

    def spy(*args, **kwargs):  # the real generate; we only keep its output to compare with
        calls.append(real_generate(*args, **kwargs))
        return calls[-1]

    def sampled_rows(eos_ids):
        calls.clear()
        monkeypatch.setattr(tiny, "eos_ids", eos_ids)
        (comps,) = tiny.generate([PROMPT], GenParams(n=3, max_tokens=10, temperature=1.0, seed=0))
        width = len(tiny.prompts.encode_prompt(PROMPT))
        return comps, calls[0][:, width:].tolist()

    monkeypatch.setattr(tiny.model, "generate", spy)
    _, rows = sampled_rows(set())
    # Declare a token the first row samples later (and not before) to be EOS, then sample again: the same
    # seed replays the same tokens until that row meets its "EOS".
    p = next(p for p in range(1, 10) if rows[0][p] not in rows[0][:p])
    eos = rows[0][p]
    comps, rows = sampled_rows({eos})
    assert (comps[0].finish_reason, comps[0].tokens, comps[0].text) == ("eos", p + 1, tiny.prompts.decode(rows[0][:p]))
    for gen, c in zip(rows[1:], comps[1:]):
        if eos in gen:
            k = gen.index(eos)
            assert (c.finish_reason, c.tokens, c.text) == ("eos", k + 1, tiny.prompts.decode(gen[:k]))
        else:
            assert (c.finish_reason, c.tokens, c.text) == ("length", 10, tiny.prompts.decode(gen))


def test_stop_string_is_matched_in_generated_text_only(tiny):
    tok = tiny.prompts.tok
    prompt_ids = tok("ends with\n", add_special_tokens=False).input_ids
    newline = tok("\n", add_special_tokens=False).input_ids
    stopper = _StopOnStrings(tiny.prompts, ("\n\n",), len(prompt_ids), 1, eos_ids=set())
    first = torch.tensor([prompt_ids + newline])
    assert not stopper(first, None).item()  # "\n" + "\n" spans prompt and generation: no stop
    assert stopper(torch.tensor([prompt_ids + newline + newline]), None).item()
    assert stopper.stopped_at == [2]


def test_stop_string_inside_a_token_cuts_the_text(tiny):
    tok = tiny.prompts.tok
    ids = tok(" apples are left", add_special_tokens=False).input_ids
    apples = tok.decode(ids[:1])
    assert len(apples) > 3, apples  # one multi-character token, e.g. " apples"
    stopper = _StopOnStrings(tiny.prompts, (apples[2:4],), 0, 1, eos_ids=set())
    assert stopper(torch.tensor([ids[:1]]), None).item()
    c = tiny._completion(ids[:1], torch.zeros(1), stopper.stopped_at[0], (apples[2:4],), 0)
    assert (c.text, c.tokens, c.finish_reason) == (apples[:2], 1, "stop")


def test_results_keep_prompt_order_across_sorting_and_chunks(tiny):
    prompts = ["a", PROMPT, "Tom has 3 boxes", PROMPT + " 12 apples", "b c"]
    results = tiny.generate(prompts, GenParams(n=2, max_tokens=4, temperature=1.0, seed=0))
    assert [[c.prompt_tokens for c in r] for r in results] == \
        [[len(tiny.prompts.encode_prompt(p))] * 2 for p in prompts]


def test_bos_is_added_once(tiny_model_dir):
    from tokenizers import processors
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    bos = tok.convert_tokens_to_ids("<|endoftext|>")
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", bos)])
    tok.chat_template = "<|endoftext|>" + tok.chat_template  # a template that writes the BOS itself
    p = PromptTokenizer(tok)
    rendered = p.apply_chat_template([{"role": "user", "content": "hi"}], "Step 1.\n\n")
    ids = p.encode_prompt(rendered)
    assert ids[0] == bos and ids[1] != bos
    assert p.encode_prompt("plain text")[:1] == [bos]
    assert p.strip_prefix_text(rendered).startswith("<|im_start|>user")


def test_model_without_chat_template_is_a_clear_error(tiny):
    saved, tiny.tokenizer.chat_template = tiny.tokenizer.chat_template, None
    try:
        with pytest.raises(Exception, match="no chat template.*chat_template="):
            tiny.apply_chat_template([{"role": "user", "content": "hi"}])
    finally:
        tiny.tokenizer.chat_template = saved


def test_chat_template_option_overrides(tiny_model_dir, tmp_path):
    template = tmp_path / "plain.jinja"
    template.write_text("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant: ")
    policy = make_backend("hf", str(tiny_model_dir), chat_template=str(template))
    assert policy.apply_chat_template([{"role": "user", "content": "hi"}], "x") == "user: hi\nassistant: x"
