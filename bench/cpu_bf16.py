"""Is bf16 autocast faster than fp32 on this CPU? Prints GFLOPS of both and their ratio, measured in one run.

Why it exists: ``bf16`` unset (auto) trains under bf16 autocast only on a CPU with AMX (train/runtime.py,
``cpu_has_amx``). On a CPU with AVX512-BF16 but no AMX, torch still reports native bf16 support, yet autocast's
bf16 matmuls ran at half the fp32 speed (BENCHMARKS.md, "CPU training"). The matmul is one layer's shape for
SmolLM2-135M (hidden 576, MLP 1536) on 1,024 tokens.

    python bench/cpu_bf16.py [--threads 1] [--reps 20]
"""

from __future__ import annotations

import argparse
import time


def gflops(fn, flops: float, reps: int) -> float:
    fn()  # warm-up (oneDNN picks and caches its kernel)
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return flops * reps / (time.perf_counter() - start) / 1e9


def main() -> None:
    import torch

    from astro_reasoner.train.runtime import cpu_has_amx, cpu_has_bf16

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    a, b = torch.randn(1024, 576), torch.randn(576, 1536)
    flops = 2 * 1024 * 576 * 1536

    def bf16() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            a @ b

    # alternate A/B twice and keep each side's best: the machine is shared and noisy
    fp32_runs, bf16_runs = [], []
    for _ in range(2):
        fp32_runs.append(gflops(lambda: a @ b, flops, args.reps))
        bf16_runs.append(gflops(bf16, flops, args.reps))
    f, h = max(fp32_runs), max(bf16_runs)
    print(f"cpu: native bf16 {cpu_has_bf16()}, AMX {cpu_has_amx()}; torch {torch.__version__}, {args.threads} thread(s)")
    print(f"fp32 {f:.1f} GFLOPS | bf16 autocast {h:.1f} GFLOPS | bf16 / fp32 = {h / f:.2f}x")
    print("auto picks", "bf16" if cpu_has_bf16() and cpu_has_amx() else "fp32", "on this CPU")


if __name__ == "__main__":
    main()
