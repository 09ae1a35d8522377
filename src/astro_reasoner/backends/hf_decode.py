"""Shared prefill and a compacting decode loop for the ``hf`` backend (``decoding="compact"``).

Why this exists (measured on SmolLM2-135M, 1 CPU thread, search calls of 48 rows; BENCHMARKS.md):
- Prefill is compute-bound on CPU and was 65 % of a search call, because ``generate`` prefills every row,
  and the n samples of a prompt -- and all prompts, through the system + few-shot prefix -- re-read the same
  tokens. ``prefill`` runs the token prefix common to the chunk once (batch 1), then each distinct prompt's
  remainder once, and copies the KV cache to the rows.
- A static batch runs as long as its longest row: steps stop at "\\n\\n" after 20-40 tokens, but a few rows
  ramble to the token limit, and ``generate`` keeps computing the finished rows. ``decode`` drops finished
  rows from the batch (and from the KV cache) as it goes.
Neither exists in transformers (its prefix caching needs a static cache and one prompt; ``generate`` never
shrinks a batch), so both are written here by hand, on the public model call (``input_ids``,
``attention_mask``, ``position_ids``, ``past_key_values``, ``cache_position``) that every decoder-only
model in transformers with a ``DynamicCache`` accepts.

Layout: rows are ``[common prefix][padding][own suffix]``; the attention mask zeros the padding and the
position ids count only real tokens, which is what ``generate`` does for left padding -- so the outputs are
those of plain ``generate`` up to float rounding (greedy: the same tokens; tests compare both paths).
Sampling: temperature, then nucleus (top-p) over the tempered distribution, drawn with a ``torch.Generator``
seeded per chunk; log-probs are under the raw distribution, like the ``generate`` path (see ``hf``).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

# Compact when this share of the rows still in the batch has finished: copying the KV cache costs about
# as much as a decode step with ~1/8 of the rows (our measurement), so smaller shares are not worth a copy.
COMPACT_SHARE = 0.125


def cache_kwarg(model) -> str:
    """The forward keyword for the KV cache: ``cache`` in transformers 5.x (``past_key_values`` is deprecated
    there and goes in 5.40), ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(type(model).forward).parameters else "past_key_values"


def _out_cache(out):
    return out["cache"] if "cache" in out else out.past_key_values


def prefill(model, ids: list[list[int]], pad_id: int, device):
    """``(input_ids, attention_mask, cache)`` for the rows ``ids``; the cache holds all but each row's last
    prompt token (the decoder runs that one to get the first next-token distribution)."""
    import torch
    from transformers import DynamicCache

    uniq: dict[tuple[int, ...], int] = {}
    row_u = [uniq.setdefault(tuple(x), len(uniq)) for x in ids]
    prompts = list(uniq)
    shortest = min(len(p) for p in prompts)
    common = 0  # longest common prefix, leaving each prompt >= 1 token for the decoder
    while common < shortest - 1 and all(p[common] == prompts[0][common] for p in prompts):
        common += 1
    width = common + max(len(p) - common for p in prompts)
    u_ids = torch.tensor([list(p[:common]) + [pad_id] * (width - len(p)) + list(p[common:]) for p in prompts],
                         device=device)
    u_mask = torch.tensor([[1] * common + [0] * (width - len(p)) + [1] * (len(p) - common) for p in prompts],
                          device=device)
    positions = (u_mask.cumsum(-1) - 1).clamp(min=0)
    cache, kw = DynamicCache(config=model.config), cache_kwarg(model)
    if common:
        model(input_ids=u_ids[:1, :common], attention_mask=u_mask[:1, :common], position_ids=positions[:1, :common],
              **{kw: cache}, use_cache=True, logits_to_keep=1)
        cache.batch_repeat_interleave(len(prompts))
    if width - 1 > common:
        model(input_ids=u_ids[:, common:width - 1], attention_mask=u_mask[:, :width - 1],
              position_ids=positions[:, common:width - 1], **{kw: cache}, use_cache=True,
              cache_position=torch.arange(common, width - 1, device=device), logits_to_keep=1)
    if cache.get_seq_length() == 0:  # one-token prompts: nothing to share
        return u_ids[row_u], u_mask[row_u], None
    index = torch.tensor(row_u, device=device)
    cache.batch_select_indices(index)
    return u_ids[index], u_mask[index], cache


def stop_window(stops: tuple[str, ...]) -> int:
    """Generated tokens to decode to see any stop string complete: each token holds >= 1 character, plus
    the newest token (which may carry text after the stop string) and one of slack."""
    return max((len(s) for s in stops), default=0) + 2


def tails_with_stop(tokenizer, tails: list[list[int]], stops: tuple[str, ...]) -> list[bool]:
    """For each row's last generated tokens: does its text contain a stop string? One ``batch_decode``."""
    texts = tokenizer.batch_decode(tails, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return [any(s in text for s in stops) for text in texts]


@dataclass
class Decoded:
    """One row's result: generated ids (EOS included if it ended so), their raw log-probs, and the number of
    generated tokens at which a stop string completed (0 = none)."""
    tokens: list[int]
    logprobs: list[float]
    stopped_at: int = 0


def decode(model, input_ids, mask, cache, *, max_tokens: int, temperature: float, top_p: float,
           eos_ids: set[int], stops: tuple[str, ...], tokenizer, seed: int | list[int] | None) -> list[Decoded]:
    """Sample up to ``max_tokens`` per row from the prefilled batch, dropping rows once they end (EOS or a
    stop string in their generated text) -- see the module doc."""
    import torch

    device = input_ids.device
    rows = input_ids.shape[0]
    out = [Decoded([], []) for _ in range(rows)]
    generator = None
    per_row = None  # a list of seeds: one generator per row, so a row's draws ignore the rest of the batch
    if isinstance(seed, list) and temperature > 0:
        per_row = [torch.Generator(device=device).manual_seed(s) for s in seed]
    elif seed is not None and temperature > 0:
        generator = torch.Generator(device=device).manual_seed(seed)
    window = stop_window(stops)
    live = list(range(rows))  # batch position -> row number
    ended = [False] * rows
    cur = input_ids[:, -1:]
    positions = mask.sum(-1, keepdim=True) - 1
    past = cache.get_seq_length() if cache is not None else 0
    if cache is None:  # nothing prefilled (one-token prompts): the decoder's first call is the whole prompt
        cur, positions = input_ids, (mask.cumsum(-1) - 1).clamp(min=0)
    kw = cache_kwarg(model)
    for step in range(max_tokens):
        width = cur.shape[1]
        logits = model(input_ids=cur, attention_mask=mask, position_ids=positions, **{kw: cache},
                       use_cache=True, cache_position=torch.arange(past, past + width, device=device),
                       logits_to_keep=1)
        cache = _out_cache(logits)
        scores = logits.logits[:, -1, :].float()
        past += width
        raw = torch.log_softmax(scores, dim=-1)
        if temperature > 0:
            probs = _nucleus(scores / temperature, top_p)
            if per_row is None:
                tok = torch.multinomial(probs, 1, generator=generator)
            else:
                tok = torch.cat([torch.multinomial(probs[b:b + 1], 1, generator=per_row[row])
                                 for b, row in enumerate(live)])
        else:
            tok = scores.argmax(-1, keepdim=True)
        picked = raw.gather(1, tok).squeeze(1).tolist()
        toks = tok.squeeze(1).tolist()
        check = []
        for b, row in enumerate(live):
            if ended[row]:
                continue
            out[row].tokens.append(toks[b])
            out[row].logprobs.append(picked[b])
            if toks[b] in eos_ids:
                ended[row] = True
            elif stops:
                check.append(row)
        if check:
            for row, hit in zip(check, tails_with_stop(tokenizer, [out[r].tokens[-window:] for r in check], stops)):
                if hit:
                    out[row].stopped_at = step + 1
                    ended[row] = True
        keep = [b for b, row in enumerate(live) if not ended[row]]
        if not keep:
            break
        if len(live) - len(keep) >= max(1, COMPACT_SHARE * len(live)):
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            live = [live[b] for b in keep]
            tok, mask, positions = tok[index], mask[index], positions[index]
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        positions = positions[:, -1:] + 1
        cur = tok
    return out


def _nucleus(scores, top_p: float):
    """Probabilities of the smallest set of tokens whose mass reaches ``top_p`` (renormalised)."""
    import torch

    probs = torch.softmax(scores, dim=-1)
    if top_p >= 1.0:
        return probs
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(-1) - sorted_probs  # mass of the more likely tokens
    sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)  # the top token always stays (before = 0)
    sorted_probs = sorted_probs / sorted_probs.sum(-1, keepdim=True)
    return torch.zeros_like(probs).scatter(-1, order, sorted_probs)
