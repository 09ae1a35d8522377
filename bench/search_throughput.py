"""Search throughput: how close the batched MCTS driver gets to raw batched ``generate``.

One run, one model, the same prompts:
  (a) ceiling    - every request the search made (same prompts, same sampling settings), replayed straight
                   through ``policy.generate`` in full batches of ``batch_size`` sequences: no tree work, no
                   checker, no partly filled waves;
  (a0) raw       - the same replay through plain transformers ``generate`` (the hf backend with
                   ``decoding=generate``), to show what the default decoding (shared prefill + compaction)
                   gains over it;
  (b) search     - ``run_search`` (what ``astro search`` runs) on N synthetic 2-step problems, early stop
                   off so the work is fixed;
  (c) sequential - the same MCTS one tree at a time, one request (one prompt, one sample) per backend call,
                   as in peer code with batch size 1 (llm-reasoners' HF default), on the first problems.
Throughput is generated tokens per wall second (prompt tokens are not counted), and per CPU-second of this
process (robust to other jobs sharing the machine). Model loading is excluded.
Targets on the 2-core CPU machine: b/a >= 0.8 and b/c >= 4.

CPU-seconds include a server engine's own process (``llamacpp``: the llama-server it starts).
With ``--compare llamacpp`` (or ct2; issue 12): (b) for the baseline ``--backend`` and the compared backend side by side
(rounds of problems, each searched by both, order alternating) and each one's own (a) ceiling; prints
``search speed-up: N.Nx`` (compared over baseline, tokens per CPU-second) and the compared backend's b/a.

Usage: python bench/search_throughput.py [--model smollm2-135m] [--problems 8] [--seq-problems 2]
       [--threads 1] [--decoding auto] [--no-raw] [--backend hf] [--compare ct2] [--round-problems N]
       [--json out.json] [key=value SearchConfig overrides]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from collections import defaultdict

from astro_reasoner.checking import Checker
from astro_reasoner.config import load_config
from astro_reasoner.data import synthesize
from astro_reasoner.search import SearchConfig, run_search
from astro_reasoner.types import GenParams

DEFAULTS = ["iterations=2", "early_stop_correct=0", "early_stop_wrong=0"]


class Recording:
    """A Policy wrapper that records every request (prompt, sampling settings) and the tokens produced."""

    def __init__(self, policy, one_by_one: bool = False):
        self.policy, self.one_by_one = policy, one_by_one
        self.name, self.deterministic = policy.name, policy.deterministic
        self.requests: list[tuple[str, GenParams]] = []
        self.calls = 0

    def apply_chat_template(self, messages, continue_text=""):
        return self.policy.apply_chat_template(messages, continue_text)

    def count_tokens(self, text):
        return self.policy.count_tokens(text)

    def close(self):
        pass

    def generate(self, prompts, params):
        self.requests += [(p, params) for p in prompts]
        if not self.one_by_one:
            self.calls += 1
            return self.policy.generate(prompts, params)
        out = []
        for i, prompt in enumerate(prompts):  # sequential baseline: one prompt, one sample per call
            row = []
            for j in range(params.n):
                seed = None if params.seed is None else params.seed + 1000 * i + j
                row += self.policy.generate([prompt], dataclasses.replace(params, n=1, seed=seed))[0]
                self.calls += 1
            out.append(row)
        return out


def cpu_now(policy) -> float:
    """CPU seconds of this process, plus the server process's for a server engine (``llamacpp``)."""
    inner = getattr(policy, "policy", policy)
    return time.process_time() + (inner.server_cpu_seconds() if hasattr(inner, "server_cpu_seconds") else 0.0)


def ceiling(policy, requests, batch_size: int) -> tuple[int, float, int, float]:
    """Replay requests grouped by sampling settings, in full calls of ``batch_size`` sequences."""
    groups: dict[GenParams, list[str]] = defaultdict(list)
    for prompt, params in requests:
        groups[dataclasses.replace(params, seed=None)].append(prompt)
    tokens, seconds, calls = 0, 0.0, 0
    c0 = cpu_now(policy)
    for params, prompts in groups.items():
        per_call = max(1, batch_size // params.n)
        for k, start in enumerate(range(0, len(prompts), per_call)):
            t0 = time.perf_counter()
            out = policy.generate(prompts[start:start + per_call], dataclasses.replace(params, seed=k))
            seconds += time.perf_counter() - t0
            tokens += sum(c.tokens for row in out for c in row)
            calls += 1
    return tokens, seconds, calls, cpu_now(policy) - c0


def search_arm(problems, rec, checker, cfg, out_dir) -> tuple[int, float, float, dict]:
    t0, c0 = time.perf_counter(), cpu_now(rec)
    summary = run_search(problems, out_dir, cfg, policy=rec, checker=checker)
    return (summary["this_run"]["generated_tokens"], time.perf_counter() - t0, cpu_now(rec) - c0,
            summary["this_run"])


def compare(args, cfg, problems) -> dict:
    """``run_search`` through ``--backend`` and ``--compare`` side by side: the problems are split into rounds
    and each round is searched by both backends, the order alternating, so load changes hit both; then the
    compared backend's own ceiling (its search's requests replayed in full batches)."""
    from astro_reasoner.backends import make_backend

    names = [args.backend, args.compare]
    policies, recs, totals = {}, {}, {}
    for name in names:
        opts = {"decoding": args.decoding} if name == "hf" else {}
        if name == "llamacpp" and args.slots:  # threads: the server's compute threads
            opts = {"parallel": args.slots}
        t0 = time.perf_counter()
        if name == "llamacpp":
            policies[name] = make_backend(name, args.model, threads=args.threads, **opts)
        else:
            policies[name] = make_backend(name, args.model, batch_size=cfg.batch_size, threads=args.threads, **opts)
        recs[name] = Recording(policies[name])
        totals[name] = {"tokens": 0, "seconds": 0.0, "cpu": 0.0, "startup_s": round(time.perf_counter() - t0, 1)}
    size = args.round_problems or max(1, len(problems) // 2)
    rounds = [problems[i:i + size] for i in range(0, len(problems), size)]
    res: dict = {}
    with Checker(workers=1) as checker, tempfile.TemporaryDirectory() as tmp:
        for r, chunk in enumerate(rounds):
            for name in (names if r % 2 == 0 else names[::-1]):
                tok, wall, cpu, _ = search_arm(chunk, recs[name], checker, cfg, os.path.join(tmp, f"{name}-{r}"))
                t = totals[name]
                t["tokens"] += tok
                t["seconds"] += wall
                t["cpu"] += cpu
                print(f"round {r + 1}/{len(rounds)} {name}: {tok} tokens {wall:.0f} s {tok / cpu:.1f} tok/cpu-s",
                      flush=True)
        for name in names:  # the ceiling of the compared backend only (the baseline's is in the single mode)
            t = totals[name]
            res[f"b_search_{name}"] = {"tokens": t["tokens"], "seconds": round(t["seconds"], 2),
                                       "calls": recs[name].calls, "tok_s": round(t["tokens"] / t["seconds"], 2),
                                       "tok_cpu_s": round(t["tokens"] / t["cpu"], 2), "startup_s": t["startup_s"]}
            if name != args.compare:
                continue
            a_tok, a_sec, a_calls, a_cpu = ceiling(policies[name], recs[name].requests, cfg.batch_size)
            res[f"a_ceiling_{name}"] = {"tokens": a_tok, "seconds": round(a_sec, 2), "calls": a_calls,
                                        "tok_s": round(a_tok / a_sec, 2), "tok_cpu_s": round(a_tok / a_cpu, 2)}
            print(f"a_ceiling_{name}", res[f"a_ceiling_{name}"], flush=True)
    for p in policies.values():
        p.close()
    new, old = args.compare, args.backend
    for unit in ("tok_s", "tok_cpu_s"):
        res[f"speedup_{unit}"] = round(res[f"b_search_{new}"][unit] / res[f"b_search_{old}"][unit], 3)
        res[f"{new}_b_over_a_{unit}"] = round(res[f"b_search_{new}"][unit] / res[f"a_ceiling_{new}"][unit], 3)
    for key in [k for k in res if k.startswith(("a_ceiling", "b_search"))]:
        r = res[key]
        print(f"{key:18s} {r['tokens']:7d} tokens {r['seconds']:8.1f} s {r['tok_s']:8.1f} tok/s "
              f"{r['tok_cpu_s']:8.1f} tok/cpu-s {r['calls']:6d} calls")
    print(f"search speed-up: {res['speedup_tok_cpu_s']:.1f}x  ({new} run_search over {old} run_search, tokens per "
          f"CPU-second; wall clock: {res['speedup_tok_s']:.1f}x)")
    print(f"{new} run_search / its own ceiling: {res[f'{new}_b_over_a_tok_cpu_s']:.2f} per CPU-second, "
          f"{res[f'{new}_b_over_a_tok_s']:.2f} wall (target >= 0.8)")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--problems", type=int, default=8)
    ap.add_argument("--seq-problems", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--decoding", default="auto", help="hf backend decoding mode for (a), (b), (c)")
    ap.add_argument("--no-raw", action="store_true", help="skip (a0), the plain-generate replay")
    ap.add_argument("--backend", default="hf", help="the backend measured (with --compare: the baseline)")
    ap.add_argument("--compare", default=None, help="a second backend (e.g. ct2): both run_search side by side")
    ap.add_argument("--round-problems", type=int, default=0, help="with --compare: problems per round "
                    "(default: half of them, so two rounds in alternating order)")
    ap.add_argument("--slots", type=int, default=0, help="llamacpp: parallel server slots (default: the backend's)")
    ap.add_argument("--json", default=None)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    cfg = load_config(SearchConfig, None, DEFAULTS + args.overrides)
    cfg = dataclasses.replace(cfg, max_active_trees=max(cfg.max_active_trees, args.problems))

    from astro_reasoner.backends import make_backend

    load0 = os.getloadavg()
    if args.compare:
        res = compare(args, cfg, synthesize(steps=2, n=args.problems, seed=0))
        res.update(model=args.model, threads=args.threads, problems=args.problems, cpus=os.cpu_count(),
                   config=dataclasses.asdict(cfg), loadavg_start_end=[round(load0[0], 2), round(os.getloadavg()[0], 2)])
        print(f"load average start/end {res['loadavg_start_end']}")
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(res, fh, indent=2)
        return
    policy = make_backend(args.backend, args.model, batch_size=cfg.batch_size, threads=args.threads,
                          **({"decoding": args.decoding} if args.backend == "hf" else {}))
    problems = synthesize(steps=2, n=args.problems, seed=0)
    res: dict = {"model": args.model, "threads": args.threads, "problems": args.problems,
                 "config": dataclasses.asdict(cfg), "cpus": os.cpu_count(), "decoding": policy.decoding}
    with Checker(workers=1) as checker, tempfile.TemporaryDirectory() as tmp:
        rec = Recording(policy)
        t0, c0 = time.perf_counter(), time.process_time()
        summary = run_search(problems, os.path.join(tmp, "b"), cfg, policy=rec, checker=checker)
        b_wall, b_cpu = time.perf_counter() - t0, time.process_time() - c0
        b_tok = summary["this_run"]["generated_tokens"]
        res["b_search"] = {"tokens": b_tok, "seconds": round(b_wall, 2), "calls": rec.calls,
                           "tok_s": round(b_tok / b_wall, 2), "tok_cpu_s": round(b_tok / b_cpu, 2),
                           "generate_seconds": round(summary["this_run"]["generate_seconds"], 2),
                           "check_seconds": round(summary["this_run"]["check_seconds"], 2)}
        print("b_search", res["b_search"], flush=True)  # long runs: show each phase as it ends
        a_tok, a_sec, a_calls, a_cpu = ceiling(policy, rec.requests, cfg.batch_size)
        res["a_ceiling"] = {"tokens": a_tok, "seconds": round(a_sec, 2), "calls": a_calls,
                            "tok_s": round(a_tok / a_sec, 2), "tok_cpu_s": round(a_tok / a_cpu, 2)}
        print("a_ceiling", res["a_ceiling"], flush=True)
        if not args.no_raw:
            raw = make_backend("hf", args.model, batch_size=cfg.batch_size, threads=args.threads,
                               decoding="generate")
            r_tok, r_sec, r_calls, r_cpu = ceiling(raw, rec.requests, cfg.batch_size)
            raw.close()
            res["a0_raw_generate"] = {"tokens": r_tok, "seconds": round(r_sec, 2), "calls": r_calls,
                                      "tok_s": round(r_tok / r_sec, 2), "tok_cpu_s": round(r_tok / r_cpu, 2)}
            print("a0_raw_generate", res["a0_raw_generate"], flush=True)
        seq = Recording(policy, one_by_one=True)
        seq_cfg = dataclasses.replace(cfg, max_active_trees=1, leaves_per_tree=1, batch_size=1)
        t0, c0 = time.perf_counter(), time.process_time()
        s_sum = run_search(problems[:args.seq_problems], os.path.join(tmp, "c"), seq_cfg, policy=seq,
                           checker=checker)
        c_wall, c_cpu = time.perf_counter() - t0, time.process_time() - c0
        c_tok = s_sum["this_run"]["generated_tokens"]
        res["c_sequential"] = {"tokens": c_tok, "seconds": round(c_wall, 2), "calls": seq.calls,
                               "tok_s": round(c_tok / c_wall, 2), "tok_cpu_s": round(c_tok / c_cpu, 2)}
    for unit in ("tok_s", "tok_cpu_s"):  # wall-clock and per CPU-second of this process (load-robust)
        res[f"b_over_a_{unit}"] = round(res["b_search"][unit] / res["a_ceiling"][unit], 3)
        res[f"b_over_c_{unit}"] = round(res["b_search"][unit] / res["c_sequential"][unit], 3)
        if "a0_raw_generate" in res:
            res[f"b_over_a0_{unit}"] = round(res["b_search"][unit] / res["a0_raw_generate"][unit], 3)
    res["loadavg_start_end"] = [round(load0[0], 2), round(os.getloadavg()[0], 2)]
    for key in ("a0_raw_generate", "a_ceiling", "b_search", "c_sequential"):
        if key not in res:
            continue
        r = res[key]
        print(f"{key:15s} {r['tokens']:7d} tokens {r['seconds']:8.1f} s {r['tok_s']:8.1f} tok/s "
              f"{r['tok_cpu_s']:8.1f} tok/cpu-s {r['calls']:6d} calls")
    for unit in ("tok_s", "tok_cpu_s"):
        print(f"[{unit}] b/a = {res[f'b_over_a_{unit}']:.2f} (target >= 0.8)   "
              f"b/c = {res[f'b_over_c_{unit}']:.2f} (target >= 4)")
    if "a0_raw_generate" in res:
        res["a_over_a0_tok_cpu_s"] = round(res["a_ceiling"]["tok_cpu_s"] / res["a0_raw_generate"]["tok_cpu_s"], 3)
        print(f"[tok_cpu_s] {policy.decoding} decoding / plain generate = {res['a_over_a0_tok_cpu_s']:.2f}; "
              f"b/a0 = {res['b_over_a0_tok_cpu_s']:.2f}")
    print(f"load average start/end {res['loadavg_start_end']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)


if __name__ == "__main__":
    main()
