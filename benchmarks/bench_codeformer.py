"""Seconds per 512 px face for our CodeFormer against spandrel_extra_arches' (upstream's code), seeded
official-config weights, fp32 and bf16 (autocast), on the CPU or a GPU.

    python benchmarks/bench_codeformer.py [--device cpu] [--threads 2] [--repeats 3] [--batch 1] [--no-reference-bf16]

The reference is ``spandrel_extra_arches.architectures.CodeFormer.CodeFormer()`` (the official config),
called as upstream's inference does, ``net(x, w)[0]`` (adain on). Times are the median of --repeats
runs after a warm-up, divided by --batch.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from comfyui_gfpgan.codeformer_arch.testing import OFFICIAL_CONFIG, seeded_codeformer


def seconds_per_face(run, x: torch.Tensor, dtype: torch.dtype, repeats: int) -> float:
    device = x.device.type

    def once():
        with torch.inference_mode(), torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
            run(x)
        if device == "cuda":
            torch.cuda.synchronize()

    once()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    return statistics.median(times) / x.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--no-reference-bf16", action="store_true",
                        help="skip the reference in bf16 (minutes per face on CPUs without native bf16)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ours = seeded_codeformer(seed=0).to(args.device)
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer as Reference

    reference = Reference(**{k: v for k, v in OFFICIAL_CONFIG.items() if k not in ("nf", "emb_dim")}).eval()
    reference.load_state_dict(ours.state_dict(), strict=True)
    reference.to(args.device)
    x = torch.rand(args.batch, 3, 512, 512, device=args.device) * 2 - 1
    for dtype in (torch.float32, torch.bfloat16):
        row = {"ours": seconds_per_face(lambda t: ours(t, fidelity=0.5), x, dtype, args.repeats)}
        if dtype == torch.float32 or not args.no_reference_bf16:
            row["reference"] = seconds_per_face(lambda t: reference(t, 0.5)[0], x, dtype, args.repeats)
        print(f"{str(dtype).removeprefix('torch.'):>9}: " + ", ".join(f"{k} {v:.2f} s/face" for k, v in row.items()))


if __name__ == "__main__":
    main()
