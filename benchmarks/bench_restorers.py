"""Each face-restorer family against its reference implementation, on the same seeded weights, in one run.

    python benchmarks/bench_restorers.py [--device cpu|cuda] [--families ...] [--repeats 3]
        [--upstream restoreformer++=/path/to/RestoreFormerPlusPlus --upstream gpen=/path/to/GPEN]

For each family: our network at the official config with seeded weights (no real weights offline,
which changes no timing), the reference built with the same weights, and one aligned 512 px face
(GPEN: its size) restored face by face. Printed: seconds per face (median of ``--repeats``) for
the reference and ours in fp32 and bf16 (bf16 weights and input on both sides), our time as a
ratio of the reference's in the same run, and how far apart the outputs are (fp32 max abs
difference on [-1, 1]; bf16 PSNR against our fp32 output). References: spandrel's GFPGAN and
RestoreFormer, spandrel_extra_arches' CodeFormer; RestoreFormer++ and GPEN have no package, so
their upstream code is imported from a checkout given with ``--upstream`` (skipped without one);
ONNX files run in onnxruntime against the same network in PyTorch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

Runner = Callable[[torch.Tensor], torch.Tensor]  # [-1, 1] in, [-1, 1] out


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def per_face_seconds(run: Runner, face: torch.Tensor, repeats: int, device: str) -> tuple[float, torch.Tensor]:
    with torch.inference_mode():
        out = run(face)  # warm-up (allocator, oneDNN primitives)
        times = []
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            out = run(face)
            sync(device)
            times.append(time.perf_counter() - start)
    return statistics.median(times), out.float().cpu()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """On [-1, 1] images (peak-to-peak 2)."""
    return float(10 * torch.log10(4 / ((a.double() - b.double()) ** 2).mean().clamp_min(1e-20)))


def gfpgan_pair(upstream: dict) -> tuple[torch.nn.Module, Callable[[torch.nn.Module], Runner], Callable, int]:
    """Ours, how to call ours, the reference (built from our state dict) and the crop size."""
    from factories import OFFICIAL_CLEAN_CONFIG, seeded_clean_network
    from spandrel.architectures.GFPGAN.__arch.gfpganv1_clean_arch import GFPGANv1Clean

    ours = seeded_clean_network(0)

    def reference():
        network = GFPGANv1Clean(**OFFICIAL_CLEAN_CONFIG, decoder_load_path=None, fix_decoder=False).eval()
        network.load_state_dict(ours.state_dict())
        return lambda x: network(x, return_rgb=False, randomize_noise=False)[0], network

    return ours, lambda net: (lambda x: net(x)), reference, 512


def codeformer_pair(upstream: dict):
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

    from comfyui_gfpgan.codeformer_arch.testing import seeded_codeformer

    ours = seeded_codeformer(0)

    def reference():
        network = CodeFormer().eval()  # spandrel_extra_arches' defaults are the official config
        network.load_state_dict(ours.state_dict())
        codebook = network.quantize
        # Its codebook lookup casts a one-hot matrix to float32, which fails beside bf16 weights; picking the
        # rows is the same product in any dtype (and costs the same as the 1024-wide one-hot product or less).
        codebook.get_codebook_feat = lambda indices, shape: (
            codebook.embedding.weight[indices.view(-1)].view(shape).permute(0, 3, 1, 2).contiguous())
        return lambda x: network(x, 0.5)[0], network  # upstream's inference: net(x, w=w, adain=True)[0]

    return ours, lambda net: (lambda x: net(x, fidelity=0.5)), reference, 512


def restoreformer_pair(upstream: dict):
    from spandrel.architectures.RestoreFormer import RestoreFormer

    from comfyui_gfpgan.restoreformer_arch.testing import seeded_restoreformer

    ours = seeded_restoreformer(0)

    def reference():
        network = RestoreFormer().eval()
        network.load_state_dict(ours.state_dict())
        return lambda x: network(x)[0], network

    return ours, lambda net: net, reference, 512


def restoreformer_pp_pair(upstream: dict):
    """Upstream: a directory holding wzhouxiff/RestoreFormerPlusPlus's RestoreFormer/modules/vqvae/vqvae_arch.py."""
    if "restoreformer++" not in upstream:
        return None
    import importlib.util

    from comfyui_gfpgan.restoreformer_arch.testing import seeded_restoreformer

    spec = importlib.util.spec_from_file_location("vqvae_arch", Path(upstream["restoreformer++"]) / "vqvae_arch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ours = seeded_restoreformer(1, plus_plus=True)

    def reference():
        network = module.VQVAEGANMultiHeadTransformer(head_size=4, ex_multi_scale_num=1).eval()
        network.load_state_dict(ours.state_dict())
        return lambda x: network(x)[0], network

    return ours, lambda net: net, reference, 512


def gpen_pair(upstream: dict):
    """Upstream: yangxy/GPEN's face_model directory (its gpen_model.py and op/, CPU path)."""
    if "gpen" not in upstream:
        return None
    sys.path.insert(0, upstream["gpen"])
    from gpen_model import FullGenerator

    from comfyui_gfpgan.gpen_arch.testing import OFFICIAL_CONFIGS, seeded_gpen_network

    config = OFFICIAL_CONFIGS[512]
    ours = seeded_gpen_network(512, seed=1)

    def reference():
        network = FullGenerator(512, 512, 8, config["channel_multiplier"], narrow=config["narrow"], device="cpu").eval()
        network.load_state_dict(ours.state_dict())
        return lambda x: network(x)[0], network

    return ours, lambda net: net, reference, 512


FAMILIES: dict[str, Callable] = {
    "gfpgan": gfpgan_pair, "codeformer": codeformer_pair, "restoreformer": restoreformer_pair,
    "restoreformer++": restoreformer_pp_pair, "gpen": gpen_pair,
}


def bench(name: str, make: Callable, device: str, repeats: int, upstream: dict, dtypes: tuple) -> dict | None:
    made = make(upstream)
    if made is None:
        print(f"{name:16s} skipped: its reference needs --upstream {name}=PATH")
        return None
    ours, call_ours, reference, size = made
    face = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).mul(2).sub(1)
    results = {}
    ref_run, ref_module = reference()
    for dtype in dtypes:
        ours.to(device, dtype)
        ref_module.to(device, dtype)  # bf16 weights and input on both sides
        x = face.to(device, dtype)
        if device == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)  # as restore_crops feeds ours on the CPU
        results[f"ref {dtype}"] = per_face_seconds(ref_run, face.to(device, dtype), repeats, device)
        results[f"ours {dtype}"] = per_face_seconds(call_ours(ours), x, repeats, device)
    ours_fp32, ref_fp32 = results["ours torch.float32"][1], results["ref torch.float32"][1]
    row = {"ref fp32": results["ref torch.float32"][0], "ours fp32": results["ours torch.float32"][0],
           "max diff fp32": float((ours_fp32 - ref_fp32).abs().max())}
    if torch.bfloat16 in dtypes:
        row.update({"ref bf16": results["ref torch.bfloat16"][0], "ours bf16": results["ours torch.bfloat16"][0],
                    "bf16 PSNR": psnr(results["ours torch.bfloat16"][1], ours_fp32)})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-bf16", action="store_true",
                        help="fp32 only (bf16 is emulated, minutes per face, on CPUs without avx512_bf16 / AMX)")
    parser.add_argument("--upstream", action="append", default=[], metavar="FAMILY=PATH",
                        help="an upstream checkout for a family without a reference package")
    args = parser.parse_args()
    upstream = dict(item.split("=", 1) for item in args.upstream)
    torch.manual_seed(0)
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"median of {args.repeats}, seconds per face (ratio = ours / reference, same run)")
    print(f"{'family':16s} {'ref fp32':>9s} {'ours fp32':>16s} {'ref bf16':>9s} {'ours bf16':>16s} "
          f"{'max|diff| fp32':>15s} {'bf16 PSNR':>10s}")
    dtypes = (torch.float32,) if args.no_bf16 else (torch.float32, torch.bfloat16)
    for name in args.families:
        row = bench(name, FAMILIES[name], args.device, args.repeats, upstream, dtypes)
        if row:
            bf16 = (f"{row['ref bf16']:9.2f} {row['ours bf16']:9.2f} ({row['ours bf16'] / row['ref bf16']:.2f}x)"
                    if "ref bf16" in row else f"{'-':>9s} {'-':>16s}")
            psnr_text = f"{row['bf16 PSNR']:8.1f} dB" if "bf16 PSNR" in row else f"{'-':>10s}"
            print(f"{name:16s} {row['ref fp32']:9.2f} {row['ours fp32']:9.2f} ({row['ours fp32'] / row['ref fp32']:.2f}x) "
                  f"{bf16} {row['max diff fp32']:15.2e} {psnr_text}", flush=True)


if __name__ == "__main__":
    main()
