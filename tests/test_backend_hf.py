"""The hf backend's own mechanics on the tiny model: raw log-probs, EOS handling, stop strings that must not
reach into the prompt, result order after length-sorting and chunking, and BOS handling."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from astro_reasoner.backends import HFBackend, make_backend
from astro_reasoner.backends.hf import _StopOnStrings
from astro_reasoner.backends.hf_decode import _nucleus, cache_kwarg, prefill
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


def test_eos_ends_a_row_and_is_counted_but_not_returned(tiny_model_dir, monkeypatch):
    # on the plain-generate path; the other decoding modes are compared with it token for token below
    tiny = make_backend("hf", str(tiny_model_dir), batch_size=3, decoding="generate")
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


def _sharpen(model) -> None:
    """Random weights with std 0.3: the tiny model's default init gives near-uniform outputs that repeat the
    last prompt token and barely depend on positions, which would hide a wrong cache or position id."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)


def test_every_decoding_mode_gives_the_greedy_outputs_of_plain_generate(tiny_model_dir):
    """Shared prefill (+ our compacting decode loop) vs plain ``generate``: the same text, tokens and
    log-probs -- prompts of different lengths sharing a long prefix, a prompt that is a prefix of another,
    chunks that split a prompt's samples, and rows that end at different steps (so finished rows are
    dropped from the batch mid-way)."""
    modes = {m: make_backend("hf", str(tiny_model_dir), batch_size=5, decoding=m)
             for m in ("compact", "shared-prefill", "generate")}
    assert make_backend("hf", str(tiny_model_dir)).decoding == "compact"  # the default for a Llama
    plain = modes["generate"]
    _sharpen(plain.model)
    for m in modes.values():
        m.model = plain.model
        m.eos_ids = set()
    prompts = [PROMPT, PROMPT + " 12 apples", PROMPT + " 12", "Tom has 3 boxes", PROMPT]
    params = GenParams(n=3, max_tokens=12, temperature=0.0)
    # end rows at different steps: EOS = a token each prompt's greedy output emits at step 3-6, and a stop
    # string that one row writes
    ends = {_greedy_ids(plain, p, 8)[1][2 + i % 4] for i, p in enumerate(prompts)}
    stop = plain.generate([prompts[1]], params)[0][0].text[3:5]
    for m in modes.values():
        m.eos_ids = ends
    for p in (params, dataclasses.replace(params, stop=(stop,))):
        expected = plain.generate(prompts, p)
        assert len({c.tokens for row in expected for c in row}) > 2  # rows really end at different steps
        for mode in ("compact", "shared-prefill"):
            for row_a, row_b in zip(modes[mode].generate(prompts, p), expected):
                for x, y in zip(row_a, row_b):
                    assert (x.text, x.tokens, x.finish_reason, x.prompt_tokens) == \
                        (y.text, y.tokens, y.finish_reason, y.prompt_tokens), mode
                    assert math.isclose(x.logprob_sum, y.logprob_sum, rel_tol=1e-4, abs_tol=1e-3)
    shared = modes["compact"]
    shared.eos_ids = set()
    # the shared path really shares: one prefix row, then one row per distinct prompt, never one per sample
    seen = []
    real_forward = shared.model.forward

    def spy(*args, **kwargs):  # every forward pass: the two prefill passes, then generate's decode steps
        seen.append(tuple(kwargs["input_ids"].shape))
        return real_forward(*args, **kwargs)

    shared.model.forward = spy
    try:
        shared.batch_size = 6
        shared.generate([PROMPT + " 12 apples", PROMPT + " 3 boxes"], GenParams(n=3, max_tokens=2, temperature=1.0,
                                                                                  seed=1))
    finally:
        del shared.model.forward
    prefix_len = len(shared.prompts.encode_prompt(PROMPT))
    assert seen[0][0] == 1 and seen[0][1] >= prefix_len  # the common prefix, once
    assert seen[1][0] == 2 and seen[1][1] <= 3  # each prompt's own rest (but its last token), once
    assert all(shape == (6, 1) for shape in seen[2:]) and len(seen) == 4  # 6 rows decode from the copied cache


def test_shared_prefill_cache_equals_each_prompts_own_cache(tiny_model_dir):
    """The copied KV cache of every row equals the cache of its prompt run alone (keys carry the rotary
    position, so a wrong position id or a wrong row-to-prompt copy shows here even on a near-uniform model)."""
    from transformers import DynamicCache

    policy = make_backend("hf", str(tiny_model_dir), batch_size=8)
    prompts = [PROMPT + " 12 apples", PROMPT, "Tom has 3 boxes", PROMPT + " 12 apples", PROMPT + " 3"]
    ids = [policy.prompts.encode_prompt(p) for p in prompts]
    with torch.no_grad():
        input_ids, mask, cache = prefill(policy.model, ids, policy.pad_id, policy.device)
        assert input_ids.shape[0] == len(prompts)
        for r, x in enumerate(ids):
            alone = DynamicCache(config=policy.model.config)
            policy.model(input_ids=torch.tensor([x[:-1]]), **{cache_kwarg(policy.model): alone}, use_cache=True)
            keep = mask[r, :-1].nonzero().squeeze(1)  # this row's real tokens in the shared layout
            assert input_ids[r, mask[r].bool()].tolist() == x
            for mine, own in zip(cache.layers, alone.layers):
                torch.testing.assert_close(mine.keys[r][:, keep], own.keys[0], atol=1e-5, rtol=1e-4)
                torch.testing.assert_close(mine.values[r][:, keep], own.values[0], atol=1e-5, rtol=1e-4)


def test_nucleus_keeps_the_smallest_set_reaching_top_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    torch.testing.assert_close(_nucleus(logits, 1.0), probs)
    torch.testing.assert_close(_nucleus(logits, 0.7), torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
    torch.testing.assert_close(_nucleus(logits, 0.79), torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
    torch.testing.assert_close(_nucleus(logits, 0.81), torch.tensor([[0.5, 0.3, 0.15, 0.0]]) / 0.95)
    torch.testing.assert_close(_nucleus(logits, 0.1), torch.tensor([[1.0, 0.0, 0.0, 0.0]]))


def test_compact_sampling_is_seeded_and_follows_the_model(tiny_model_dir):
    """Same seed -> same samples; other seed -> others; and the first sampled token's frequencies follow
    the model's tempered distribution (total variation < 0.1 over 3,000 draws of a peaked distribution)."""
    policy = make_backend("hf", str(tiny_model_dir), batch_size=1000)
    policy.eos_ids = set()
    p = GenParams(n=6, max_tokens=6, temperature=1.0, seed=11)
    a, b = policy.generate([PROMPT, "Tom"], p), policy.generate([PROMPT, "Tom"], p)
    c = policy.generate([PROMPT, "Tom"], dataclasses.replace(p, seed=12))
    assert [x.text for r in a for x in r] == [x.text for r in b for x in r] != [x.text for r in c for x in r]
    _sharpen(policy.model)  # a spread-out but not uniform next-token distribution
    ids = policy.prompts.encode_prompt(PROMPT)
    with torch.no_grad():
        logits = policy.model(torch.tensor([ids])).logits[0, -1].float()
    temp = 0.7
    target: dict[str, float] = {}  # by text: a byte token may decode to the same "\ufffd" as another
    for tok, prob in enumerate(torch.softmax(logits / temp, -1).tolist()):
        text = policy.prompts.decode([tok])
        target[text] = target.get(text, 0.0) + prob
    rows = policy.generate([PROMPT], GenParams(n=3000, max_tokens=1, temperature=temp, seed=5))[0]
    freq = {text: sum(r.text == text for r in rows) / len(rows) for text in target}
    assert 0.5 * sum(abs(freq[t] - target[t]) for t in target) < 0.1
    assert max(target.values()) < 0.9  # the test means something: more than one token is likely
