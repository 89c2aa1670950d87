"""Our pipeline against GFPGANer's algorithm on the same inputs, weights and detector, in one run.

    python benchmarks/bench_pipeline.py [--device cuda] [--cases one_face four_faces eight_faces] [--compile]

Each measurement runs in a fresh subprocess so peak memory (CPU: max RSS; CUDA: max allocated) is
its own. The baseline is facexlib's FaceRestoreHelper + a per-face network loop (the upstream
GFPGANv1Clean code, via spandrel) + its CPU paste, with and without its parsing mask: GFPGANer's
enhance(). Weights are seeded random (no real weights offline), which changes no timing.
With --compile ours also runs through torch.compile (CompiledNetwork); its one-off compile is
done on a warm-up crop first and printed as its own stage, outside the total.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GFPGAN_TEST_ASSETS", ROOT.parent / "shared"))
sys.path.insert(0, str(ROOT / "tests"))

CASES = {  # name: (height, width, faces per frame, frames, face widths in px or None = as large as fits)
    "one_face": (512, 512, 1, 1, None),
    "four_faces": (2048, 2048, 4, 1, None),
    "eight_faces": (2160, 3840, 8, 1, None),
    "batch_32_faces": (2160, 3840, 8, 4, None),
    # small faces in big frames: those a 640 px working size missed (defect 8)
    "four_small_faces": (2048, 2048, 4, 1, (70, 80, 90, 100)),
    "eight_small_faces": (2160, 3840, 8, 1, (70, 80, 90, 100) * 2),
    "eight_tiny_faces": (2160, 3840, 8, 1, (30, 35, 40, 45) * 2),  # GFPGANer finds all 8 (at full size)
}
# The shared photos and their face boxes as shared/README.md lists them.
PHOTOS = (("astronaut.png", (177.9, 56.8, 273.1, 177.2)), ("grace_hopper.jpg", (177.7, 106.5, 353.9, 327.7)))


def compose(case: str) -> np.ndarray:
    """``[frames, H, W, 3]`` uint8 RGB: the shared photos tiled on a gray frame (tests/factories.tile_photos)."""
    import cv2

    from factories import tile_photos

    height, width, faces, frames, face_widths = CASES[case]
    photos = [(cv2.imread(str(SHARED / "images" / name))[:, :, ::-1], box) for name, box in PHOTOS]
    if case == "one_face":
        return photos[0][0][None].copy()
    canvas, _ = tile_photos(photos, height, width, faces, face_widths)
    return np.stack([canvas] * frames)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_ours(case: str, device: str, dtype: str, compiled: bool) -> dict:
    from comfyui_gfpgan.face_pipeline.align import align_faces
    from comfyui_gfpgan.face_pipeline.detect import detect_faces, load_detector, select_faces
    from comfyui_gfpgan.face_pipeline.pipeline import DetectSettings
    from comfyui_gfpgan.face_pipeline.paste import paste_faces
    from comfyui_gfpgan.face_pipeline.restore import default_chunk_size, restore_crops
    from comfyui_gfpgan.face_restorers import CompiledNetwork
    from comfyui_gfpgan.gfpgan_arch.testing import seeded_clean_network

    network = seeded_clean_network(0).to(device, getattr(torch, dtype))
    compile_time = 0.0
    if compiled:
        network = CompiledNetwork(network)
        start = time.perf_counter()
        chunk = min(default_chunk_size(torch.device(device)), CASES[case][2] * CASES[case][3])
        restore_crops(network, torch.rand(chunk, 3, 512, 512, device=device))  # compiles for this chunk shape
        sync(device)
        compile_time = time.perf_counter() - start
    detector = load_detector(SHARED / "weights" / "retinaface_mobilenet0.25.safetensors", device)
    settings = DetectSettings()  # the defaults: GFPGANer's detection (full size, 0.97, eyes >= 5 px apart)
    frames = torch.from_numpy(compose(case)).permute(0, 3, 1, 2).float() / 255
    times: dict[str, float] = {}

    def stage(name, fn):
        sync(device)
        start = time.perf_counter()
        out = fn()
        sync(device)
        times[name] = times.get(name, 0.0) + time.perf_counter() - start
        return out

    def pipeline():
        images = stage("upload", lambda: frames.to(device))
        faces = stage("detect", lambda: select_faces(
            detect_faces(detector, images, threshold=settings.threshold, working_size=settings.working_size),
            min_eye_distance=settings.min_eye_distance))
        faces, crops = stage("align", lambda: align_faces(images, faces))
        restored = stage("restore", lambda: restore_crops(network, crops))  # the default chunk size
        result, _ = stage("paste", lambda: paste_faces(images, faces, restored))
        return faces, stage("download", lambda: result.cpu())

    with torch.inference_mode():
        if device.startswith("cuda"):
            pipeline()  # warm-up: CUDA kernels, cuDNN plans (the baseline gets one too)
            times.clear()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        faces, result = pipeline()
        total = time.perf_counter() - start
    if compiled:
        times["compile (once, not in total)"] = compile_time
    return {"faces": len(faces), "total": total, "stages": times, "output": result.cpu()}


def run_reference(case: str, device: str, parse: bool) -> dict:
    from gfpganer_reference import gfpganer_enhance, make_face_helper
    from spandrel.architectures.GFPGAN.__arch.gfpganv1_clean_arch import GFPGANv1Clean

    from comfyui_gfpgan.gfpgan_arch.testing import OFFICIAL_CLEAN_CONFIG, seeded_clean_network

    network = GFPGANv1Clean(**OFFICIAL_CLEAN_CONFIG, decoder_load_path=None, fix_decoder=False).eval()
    network.load_state_dict(seeded_clean_network(0).state_dict())
    network.to(device)
    parser = None
    if parse:
        from facexlib.parsing.parsenet import ParseNet

        torch.manual_seed(0)
        parser = ParseNet(in_size=512, out_size=512, parsing_ch=19).eval().to(device)
    helper = make_face_helper(SHARED / "weights" / "retinaface_mobilenet0.25.safetensors", parser)
    helper.device = torch.device(device)
    helper.face_det.to(device)
    helper.face_det.device = torch.device(device)
    helper.face_det.mean_tensor = helper.face_det.mean_tensor.to(device)
    network_time = [0.0]

    def timed_network(x, **kwargs):
        sync(device)
        start = time.perf_counter()
        out = network(x.to(device), **kwargs)
        sync(device)
        network_time[0] += time.perf_counter() - start
        return out[0].cpu(), out[1]

    frames = compose(case)

    def enhance_all():
        outputs, faces = [], 0
        for frame in frames:
            restored, count = gfpganer_enhance(helper, timed_network, np.ascontiguousarray(frame[:, :, ::-1]))
            outputs.append(restored)
            faces += count
        return outputs, faces

    with torch.inference_mode():
        if device.startswith("cuda"):
            enhance_all()  # warm-up, as ours gets
            network_time[0] = 0.0
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        outputs, faces = enhance_all()
        total = time.perf_counter() - start
    return {"faces": faces, "total": total, "stages": {"network": network_time[0], "other": total - network_time[0]},
            "output": outputs}


def measure(args: argparse.Namespace) -> None:
    """Child process: one measurement, printed as JSON."""
    torch.manual_seed(0)
    if args.impl == "ours":
        result = run_ours(args.case, args.device, args.dtype, args.compile)
    else:
        result = run_reference(args.case, args.device, parse=args.impl == "reference+parse")
    peak = (torch.cuda.max_memory_allocated() if args.device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    output = result.pop("output")
    if args.save:
        torch.save(output, args.save)
    print(json.dumps({**result, "peak_bytes": peak}))


def child(case: str, impl: str, device: str, dtype: str = "float32", save: str | None = None,
          compiled: bool = False) -> dict:
    command = [sys.executable, __file__, "--child", "--case", case, "--impl", impl, "--device", device, "--dtype", dtype]
    if compiled:
        command.append("--compile")
    if save:
        command += ["--save", save]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a.double() - b.double()) ** 2).mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cases", nargs="+", default=["one_face", "four_faces", "eight_faces"], choices=list(CASES))
    parser.add_argument("--no-parse-baseline", action="store_true", help="skip the slower parse-mask baseline")
    parser.add_argument("--compile", action="store_true", help="also time ours through torch.compile")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return measure(args)

    from comfyui_gfpgan.face_pipeline.pipeline import DetectSettings

    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    defaults = DetectSettings()
    size = "full size" if not defaults.working_size else f"short side {defaults.working_size} px"
    print(f"detection: both at {size}, confidence {defaults.threshold or 0.97}, eyes >= {defaults.min_eye_distance} px apart "
          "(ours: the default DetectSettings; the same work as GFPGANer's)")
    bf16 = args.device.startswith("cuda") or "avx512_bf16" in Path("/proc/cpuinfo").read_text()
    outputs = Path(tempfile.mkdtemp(prefix="gfpgan_bench_"))
    fp32_file, bf16_file = str(outputs / "fp32.pt"), str(outputs / "bf16.pt")
    for case in args.cases:
        h, w, per_frame, frames, _ = CASES[case]
        print(f"\n== {case}: {frames} frame(s) of {w}x{h}, {per_frame} face(s) each")
        runs = {"reference": child(case, "reference", args.device)}
        if not args.no_parse_baseline:
            runs["reference+parse"] = child(case, "reference+parse", args.device)
        runs["ours fp32"] = child(case, "ours", args.device, "float32", fp32_file)
        if bf16:
            runs["ours bf16"] = child(case, "ours", args.device, "bfloat16", bf16_file)
        if args.compile:
            runs["ours fp32 comp."] = child(case, "ours", args.device, "float32", compiled=True)
            if bf16:
                runs["ours bf16 comp."] = child(case, "ours", args.device, "bfloat16", compiled=True)
        base = runs["reference"]
        for name, run in runs.items():
            stages = ", ".join(f"{k} {v:.2f}s" for k, v in run["stages"].items())
            print(f"{name:16s} faces {run['faces']:3d}  total {run['total']:7.2f}s  ratio {run['total'] / base['total']:.2f}x  "
                  f"faces/s {run['faces'] / run['total']:6.2f}  peak {run['peak_bytes'] / 2**30:5.2f} GiB  [{stages}]")
        if bf16:
            fp32, bf16_out = (torch.load(f, weights_only=True) for f in (fp32_file, bf16_file))
            print(f"bf16 vs fp32 output PSNR: {psnr(fp32, bf16_out):.1f} dB")


if __name__ == "__main__":
    main()
