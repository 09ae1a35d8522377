"""CPU engines side by side on the same search workload, in one run (issue 12).

1. Capture: ``run_search`` on N synthetic 2-step problems with a recording wrapper around a backend
   (``--capture-backend``, default ct2 because it is the quickest; the requests are what the search asks of
   any engine: prompts, n, stop strings, max tokens, temperature, top-p, seed). Saved with ``--save``,
   reused with ``--workload``.
2. Replay: every recorded backend call goes through every engine, call by call, the engines' order rotating
   from call to call, so whatever else runs on the machine hits all engines alike.
   Reported per engine: generated tokens per wall second and per CPU-second (this process's CPU time, plus
   the server process's for a server engine), start-up time (model load, conversion cached), resident memory
   added by the engine (the server's RSS for a server engine).
3. Agreement: greedy (temperature 0) continuations of the first ``--agree`` recorded prompts, one sample each,
   compared with the hf backend's: identical texts, common token prefix, and ``logprob_sum`` (raw log-probs,
   same semantics in every engine) on the identical ones.

Engines (``--engines``): ``hf`` (today's backend, fp32 torch, shared prefill + compaction), ``ct2``
(CTranslate2 int8), ``llama-server`` (the ``llamacpp`` backend: llama.cpp's C++ server built by ``make setup``,
parallel slots, continuous batching, on a Q8_0 GGUF of the checkpoint), ``llama-cpp-python``
(llama.cpp in-process through llama-cpp-python's high-level API, which decodes one sequence at a time).
An engine whose package is missing is reported as skipped with the reason.

Usage: python bench/engines.py [--problems 4] [--threads 1] [--engines hf,ct2,llama-server,llama-cpp-python]
       [--workload w.jsonl | --save w.jsonl] [--agree 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time

import psutil

from astro_reasoner.types import GenParams

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from search_throughput import Recording, cpu_now  # noqa: E402  (same folder; bench scripts are not a package)


def capture(backend: str, model: str, problems: int, threads: int, overrides: list[str]) -> list[dict]:
    """Run a search and return its backend calls: [{"prompts": [...], "params": {...}}, ...]."""
    from astro_reasoner.backends import make_backend
    from astro_reasoner.checking import Checker
    from astro_reasoner.config import load_config
    from astro_reasoner.data import synthesize
    from astro_reasoner.search import SearchConfig, run_search

    cfg = load_config(SearchConfig, None, ["iterations=2", "early_stop_correct=0", "early_stop_wrong=0"] + overrides)
    cfg = dataclasses.replace(cfg, max_active_trees=max(cfg.max_active_trees, problems))
    policy = make_backend(backend, model, threads=threads, batch_size=cfg.batch_size)
    calls: list[dict] = []

    class Calls(Recording):
        def generate(self, prompts, params):
            calls.append({"prompts": list(prompts), "params": dataclasses.asdict(params)})
            return super().generate(prompts, params)

    with Checker(workers=1) as checker, tempfile.TemporaryDirectory() as tmp:
        run_search(synthesize(steps=2, n=problems, seed=0), os.path.join(tmp, "s"), cfg, policy=Calls(policy),
                   checker=checker)
    policy.close()
    return calls


def params_of(call: dict) -> GenParams:
    p = dict(call["params"])
    p["stop"] = tuple(p.get("stop") or ())
    return GenParams(**p)


# ------------------------------------------------------------------------------------------- engines

class Engine:
    """One engine under test: a Policy, plus the process whose CPU time counts (a server's, if any)."""

    def __init__(self, name: str, policy, startup_s: float, rss_mb: float, note: str = ""):
        self.name, self.policy, self.startup_s, self.rss_mb, self.note = name, policy, startup_s, rss_mb, note
        self.tokens, self.wall, self.cpu, self.calls = 0, 0.0, 0.0, 0

    def cpu_now(self) -> float:
        return cpu_now(self.policy)  # this process + a server engine's own process (search_throughput.cpu_now)

    def run(self, call: dict) -> list:
        c0, t0 = self.cpu_now(), time.perf_counter()
        out = self.policy.generate(call["prompts"], params_of(call))
        self.wall += time.perf_counter() - t0
        self.cpu += self.cpu_now() - c0
        self.tokens += sum(c.tokens for row in out for c in row)
        self.calls += 1
        return out

    def close(self) -> None:
        self.policy.close()  # a server engine's backend stops its own server


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2 ** 20


def build(name: str, model: str, threads: int, batch_size: int, slots: int) -> Engine:
    from astro_reasoner.backends import make_backend

    rss0, t0 = _rss_mb(), time.perf_counter()
    if name == "hf":
        policy = make_backend("hf", model, threads=threads, batch_size=batch_size)
        return Engine(name, policy, time.perf_counter() - t0, _rss_mb() - rss0)
    if name == "ct2":
        policy = make_backend("ct2", model, threads=threads, batch_size=batch_size)
        return Engine(name, policy, time.perf_counter() - t0, _rss_mb() - rss0, note=f"int8, {policy.ct2_dir.name}")
    if name == "llama-server":
        return _llama_server(model, threads, slots)
    if name == "llama-cpp-python":
        from llama_cpp_policy import LlamaCppPolicy

        policy = LlamaCppPolicy(model, threads=threads)
        return Engine(name, policy, time.perf_counter() - t0, _rss_mb() - rss0, note="Q4_1 GGUF, one sequence at a time")
    raise SystemExit(f"error: unknown engine {name!r}")


def _llama_server(model: str, threads: int, slots: int) -> Engine:
    """The ``llamacpp`` backend: llama.cpp's own C++ server (built by ``make setup``), ``slots`` parallel
    sequences with continuous batching and per-slot prompt caching, on a Q8_0 GGUF of the checkpoint."""
    from astro_reasoner.backends import BackendError, make_backend

    t0 = time.perf_counter()
    try:
        policy = make_backend("llamacpp", model, parallel=slots, threads=threads, timeout=3600)
    except BackendError as exc:
        raise ImportError(str(exc)) from None
    pid = policy.server.procs[0].pid
    rss = psutil.Process(pid).memory_info().rss / 2 ** 20
    return Engine("llama-server", policy, time.perf_counter() - t0, rss,
                  note=f"{policy.decoding}, continuous batching")


# ------------------------------------------------------------------------------------------- agreement

def agreement(engines: list[Engine], prompts: list[str], max_tokens: int) -> dict:
    params = GenParams(n=1, max_tokens=max_tokens, stop=("\n\n",), temperature=0.0)
    outs = {e.name: [r[0] for r in e.policy.generate(prompts, params)] for e in engines}
    ref = outs.get("hf")
    res = {}
    for e in engines:
        if ref is None or e.name == "hf":
            continue
        tok = next(x.policy for x in engines if x.name == "hf")
        same, prefix, lp = 0, [], []
        for a, b in zip(ref, outs[e.name]):
            same += a.text == b.text
            ta, tb = tok.prompts.tok(a.text).input_ids, tok.prompts.tok(b.text).input_ids
            k = next((i for i, (x, y) in enumerate(zip(ta, tb)) if x != y), min(len(ta), len(tb)))
            prefix.append(k / max(1, max(len(ta), len(tb))))
            if a.text == b.text and a.tokens == b.tokens:
                lp.append(abs(a.logprob_sum - b.logprob_sum) / max(1, a.tokens))
        res[e.name] = {"identical": f"{same}/{len(ref)}", "common_prefix_share": round(sum(prefix) / len(prefix), 3),
                       "logprob_abs_diff_per_token": round(sum(lp) / len(lp), 4) if lp else None}
    return res


# ------------------------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--problems", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--engines", default="hf,ct2,llama-server,llama-cpp-python")
    ap.add_argument("--capture-backend", default="ct2")
    ap.add_argument("--workload", default=None, help="replay this saved workload instead of capturing one")
    ap.add_argument("--save", default=None, help="save the captured workload here (JSONL, one call a line)")
    ap.add_argument("--slots", type=int, default=32, help="llama-server parallel slots")
    ap.add_argument("--agree", type=int, default=8)
    ap.add_argument("--json", default=None)
    ap.add_argument("overrides", nargs="*", help="SearchConfig key=value for the capture")
    args = ap.parse_args()
    load0 = os.getloadavg()
    if args.workload:
        with open(args.workload) as fh:
            calls = [json.loads(line) for line in fh if line.strip()]
    else:
        t0 = time.perf_counter()
        calls = capture(args.capture_backend, args.model, args.problems, args.threads, args.overrides)
        print(f"captured {len(calls)} calls in {time.perf_counter() - t0:.0f} s", flush=True)
        if args.save:
            with open(args.save, "w") as fh:
                fh.writelines(json.dumps(c) + "\n" for c in calls)
    batch = max(len(c["prompts"]) * c["params"]["n"] for c in calls)
    names = [n for n in args.engines.split(",") if n]
    if not names:  # capture only
        return
    engines, skipped = [], {}
    for name in names:
        try:
            engines.append(build(name, args.model, args.threads, batch, args.slots))
            print(f"built {name} in {engines[-1].startup_s:.1f} s", flush=True)
        except ImportError as exc:
            skipped[name] = f"not installed ({exc})"
            print(f"skipped {name}: {skipped[name]}", flush=True)
    try:
        for k, call in enumerate(calls):  # rotate the order so load changes hit every engine alike
            for e in engines[k % len(engines):] + engines[:k % len(engines)]:
                e.run(call)
            print(f"call {k + 1}/{len(calls)}: " + ", ".join(f"{e.name} {e.tokens / e.cpu:.1f}" for e in engines)
                  + " tok/cpu-s", flush=True)
        prompts = [p for c in calls for p in c["prompts"]][: args.agree]
        agree = agreement(engines, prompts, max(c["params"]["max_tokens"] for c in calls)) if args.agree else {}
    finally:
        for e in engines:
            e.close()
    res = {"model": args.model, "threads": args.threads, "calls": len(calls), "cpus": os.cpu_count(),
           "sequences": sum(len(c["prompts"]) * c["params"]["n"] for c in calls), "skipped": skipped,
           "agreement": agree, "loadavg_start_end": [round(load0[0], 2), round(os.getloadavg()[0], 2)], "engines": {}}
    for e in engines:
        res["engines"][e.name] = {"tokens": e.tokens, "wall_s": round(e.wall, 1), "cpu_s": round(e.cpu, 1),
                                  "tok_s": round(e.tokens / e.wall, 1), "tok_cpu_s": round(e.tokens / e.cpu, 1),
                                  "startup_s": round(e.startup_s, 1), "rss_mb": round(e.rss_mb), "note": e.note}
    base = res["engines"].get("hf")
    print(f"{'engine':18s} {'tokens':>7s} {'wall s':>7s} {'tok/s':>7s} {'tok/cpu-s':>9s} {'x hf':>6s} "
          f"{'start s':>7s} {'RSS MB':>7s}")
    for name, r in res["engines"].items():
        ratio = r["tok_cpu_s"] / base["tok_cpu_s"] if base else float("nan")
        r["x_hf_cpu"] = round(ratio, 2)
        print(f"{name:18s} {r['tokens']:7d} {r['wall_s']:7.1f} {r['tok_s']:7.1f} {r['tok_cpu_s']:9.1f} {ratio:6.2f} "
              f"{r['startup_s']:7.1f} {r['rss_mb']:7d}  {r['note']}")
    for name, why in skipped.items():
        print(f"{name:18s} skipped: {why}")
    print("agreement with hf (greedy):", json.dumps(agree))
    print(f"load average start/end {res['loadavg_start_end']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)


if __name__ == "__main__":
    main()
