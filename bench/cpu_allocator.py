"""How much of a CPU training step is the kernel's page faulting, and what removes it? Prints seconds per step,
user and system CPU time and peak memory of the same training steps under several allocator settings, measured
in one run, with each setting's ratio to glibc's defaults.

Why it exists: with glibc's defaults a third of a CPU training step's wall time was system time (BENCHMARKS.md,
"CPU training"): every step frees and re-allocates logits and activations of hundreds of MB, and glibc serves each
through a fresh ``mmap`` whose 4 KiB pages are faulted in again. The settings compared:
- ``default``: glibc as it comes;
- ``thp``: torch's own switch ``THP_MEM_ALLOC_ENABLE=1`` (c10's CPU allocator aligns buffers of >= 2 MiB to
  2 MiB and asks for transparent huge pages with ``madvise``, so a fault maps 2 MiB instead of 4 KiB);
- ``jemalloc``: ``LD_PRELOAD`` of libjemalloc, when the machine has it (``apt install libjemalloc2``);
- ``glibc-tuned``: ``ASTRO_TUNE_MALLOC=1`` (train/allocator.py: no mmap, no trim; fragments over long runs).

Each setting runs in a fresh process (the settings are read at start-up), in the order A B C .. A B C ..; the
best of each setting's runs is reported. The model is SmolLM2-135M-Instruct (the embedded default), fp32,
random token ids of a fixed length: the step's cost depends on shapes, not on the text.

    python bench/cpu_allocator.py [--steps 4] [--rounds 2] [--batch 8] [--tokens 384] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

JEMALLOC = ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2")


def child(args: argparse.Namespace) -> None:
    """One setting: a warm-up step, then ``--steps`` timed AdamW steps; prints one JSON line."""
    import resource
    import time

    import torch
    from transformers import AutoModelForCausalLM

    from astro_reasoner.models import resolve_model
    from astro_reasoner.train.allocator import tune_glibc_malloc

    tuned = tune_glibc_malloc()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(resolve_model("smollm2-135m"), dtype=torch.float32)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.tokens))

    def step() -> float:
        start = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    step()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    wall = sum(step() for _ in range(args.steps))
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"s_per_step": wall / args.steps, "user": (r1.ru_utime - r0.ru_utime) / args.steps,
                      "sys": (r1.ru_stime - r0.ru_stime) / args.steps, "peak_gb": r1.ru_maxrss / 2**20,
                      "glibc_tuned": tuned}))


def settings() -> dict[str, dict[str, str]]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("MALLOC_") and k not in ("LD_PRELOAD", "THP_MEM_ALLOC_ENABLE", "ASTRO_TUNE_MALLOC")}
    out = {"default": base, "thp": {**base, "THP_MEM_ALLOC_ENABLE": "1"}}
    lib = next((p for p in JEMALLOC if Path(p).exists()), None)
    if lib:
        out["jemalloc"] = {**base, "LD_PRELOAD": lib}
    out["glibc-tuned"] = {**base, "ASTRO_TUNE_MALLOC": "1"}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=384)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", help="comma-separated settings to run (default: all available)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    envs = settings()
    if args.only:
        envs = {k: v for k, v in envs.items() if k in args.only.split(",")}
    cmd = [sys.executable, __file__, "--child", *(f"--{k}={getattr(args, k)}" for k in
                                                  ("steps", "batch", "tokens", "threads"))]
    runs: dict[str, list[dict]] = {k: [] for k in envs}
    for r in range(args.rounds):
        for name, env in envs.items():
            out = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{name} failed:\n{out.stderr[-2000:]}")
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1} {name}: {runs[name][-1]}", flush=True)
    best = {k: min(v, key=lambda x: x["s_per_step"]) for k, v in runs.items()}
    ref = best["default"]["s_per_step"] if "default" in best else None
    print(f"\n{args.batch} x {args.tokens} tokens, {args.threads} thread(s), best of {args.rounds} runs of "
          f"{args.steps} steps")
    print("| setting | s / step | user s / step | sys s / step | peak GB | speed-up vs default |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for k, b in best.items():
        ratio = f"{ref / b['s_per_step']:.2f}x" if ref else "-"
        print(f"| {k} | {b['s_per_step']:.2f} | {b['user']:.2f} | {b['sys']:.2f} | {b['peak_gb']:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
