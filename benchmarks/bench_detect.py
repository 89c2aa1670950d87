"""Face detection speed: ours against "today's code" (commit 3c5cc34) and facexlib, its floor, its share of a job.

    python benchmarks/bench_detect.py [--device cuda] [--repeats 3] [--sizes 640 1024 0] [--frames 512 2k 4k]
                                      [--variants mobilenet0.25 resnet50 yolov5n yolov5l] [--max-run 4]

Prints three parts, every figure measured in this run:

1. Per detector (RetinaFace MobileNet-0.25 with its real weights; RetinaFace ResNet-50, YOLOv5-face n and l
   seeded, see seeded_detectors.py; YOLOv5-face needs the ``codeformer`` package), per frame (512x512,
   2048x1080, 3840x2160, composed from the shared photos: real faces of 24 to 300 px) and working size
   (short side shrunk to it; 0 = full size): the fastest of --repeats runs after a warm-up (on a shared VM
   the least disturbed run is the code's own speed; every time here is a fastest), of
   - ours: ``detect_faces`` with the default detector (BatchNorm folded, channels-last, stem in strips,
     box and landmark heads only at the candidates);
   - today: ``plain_retinaface_detect``, commit 3c5cc34's algorithm (the whole image through the unfolded
     network, NCHW, every head, softmax, then decode and NMS). Today's code had no YOLOv5-face: its
     column there is the same detector unoptimised (upstream's arithmetic, ``optimise=False``);
   - facexlib: ``RetinaFace.detect_faces`` (MobileNet-0.25, CPU only), given the frame resized as ours is.
   The variants are timed interleaved (A B C A B C ...), so the drift of a shared VM hits each alike; the
   ratios are of those times, from the same run. Each row also checks that ours and today's boxes are the
   same (within 1e-2 px on the real weights; on seeded ones the difference is only reported) and, for
   MobileNet-0.25, counts the faces GFPGANer finds (facexlib at full size, eyes >= 5 px apart) that the
   working size misses. A cell expected (from the variant's previous cell) to take over --max-run seconds
   a run is skipped, and said so; one whose rounds would take over --cell-budget seconds gets fewer (n).
2. A floor for full-size 3840x2160 MobileNet-0.25 here: its convolutions' FLOPs (2 x MACs, hooked) over the
   peak fp32 rate (a big matmul and a 64->64 3x3 convolution, best of 5), and the bytes a whole-image pass
   moves through its stem (each activation written and read once) over the copy bandwidth; ours against both.
3. Detection's share of a folder job: ``comfyui-gfpgan restore`` (the CLI's own ``main``, in this process,
   its default settings, a seeded GFP-GAN) on a few 2048x1080 photos with two faces each; the detect stage
   and ``detector.detect`` timed by wrapping them, against the whole command's wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from bench_pipeline import PHOTOS, SHARED, sync  # run as a script: benchmarks/ is on sys.path (tests/ too, by it)
from seeded_detectors import CANDIDATES, retinaface_resnet50_file, yolov5face_file

WEIGHTS = SHARED / "weights" / "retinaface_mobilenet0.25.safetensors"
# name: (height, width, face widths in px, one per tile; the two shared photos alternate). None: the
# astronaut photo as it is. The widths span every pyramid level; each photo fits its grid cell.
FRAMES = {
    "512": (512, 512, None),
    "2k": (1080, 2048, (90, 150, 60, 100, 40, 64, 24, 36)),
    "4k": (2160, 3840, (170, 300, 110, 190, 64, 110, 32, 48)),
}
BOX_TOLERANCE = 1e-2  # px: ours and today's boxes agree to this


def compose_frame(name: str) -> np.ndarray:
    """An HxWx3 uint8 RGB frame of the shared photos (tests/factories.tile_photos)."""
    import cv2

    from factories import tile_photos

    height, width, face_widths = FRAMES[name]
    photos = [(cv2.imread(str(SHARED / "images" / file))[:, :, ::-1], box) for file, box in PHOTOS]
    if face_widths is None:
        return np.ascontiguousarray(photos[0][0])
    return tile_photos(photos, height, width, len(face_widths), face_widths)[0]


def working_shape(height: int, width: int, working_size: int) -> tuple[int, int]:
    """The working image's (height, width), as ``detect_faces`` computes it."""
    from comfyui_gfpgan.face_pipeline.detect import working_scale

    scale = working_scale(height, width, working_size)
    return (height, width) if scale == 1.0 else (max(1, round(height * scale)), max(1, round(width * scale)))


def shrink(images: torch.Tensor, working_size: int) -> torch.Tensor:
    """The working image, as ``detect_faces`` (and 3c5cc34's) makes it."""
    size = working_shape(*images.shape[-2:], working_size)
    if size == tuple(images.shape[-2:]):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)


@torch.inference_mode()
def plain_retinaface_detect(network, images: torch.Tensor, threshold: float, working_size: int,
                            nms_threshold: float = 0.4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Commit 3c5cc34's ``detect_faces`` ("today's code"): boxes, scores and landmarks (full-size px).

    ``network`` is an unfolded ``RetinaFaceNet`` (NCHW) taking facexlib's input; its forward is 3c5cc34's:
    facexlib's own FPN and SSH modules, every head over every anchor, softmax; then only the anchors above
    the threshold are decoded, and NMS runs in the working image's pixels.
    """
    from comfyui_gfpgan.face_detectors.interface import nms_per_image
    from comfyui_gfpgan.face_detectors.retinaface import _VARIANCE, _priors, to_network_input

    height, width = images.shape[-2:]
    x = shrink(images.to(next(network.parameters()).dtype), working_size)
    net_h, net_w = x.shape[-2:]
    levels = network.fpn(list(network.body(to_network_input(x)).values()))
    features = [ssh(level) for ssh, level in zip((network.ssh1, network.ssh2, network.ssh3), levels)]
    loc = torch.cat([head(f) for head, f in zip(network.BboxHead, features)], dim=1).float()
    logits = torch.cat([head(f) for head, f in zip(network.ClassHead, features)], dim=1).float()
    landmarks = torch.cat([head(f) for head, f in zip(network.LandmarkHead, features)], dim=1).float()
    scores = F.softmax(logits, dim=-1)[..., 1]
    frame, anchor = torch.nonzero(scores > threshold, as_tuple=True)
    scores, prior, loc = scores[frame, anchor], _priors(net_h, net_w).to(loc.device)[anchor], loc[frame, anchor]
    centers = prior[:, :2] + loc[:, :2] * _VARIANCE[0] * prior[:, 2:]
    sizes = prior[:, 2:] * torch.exp(loc[:, 2:] * _VARIANCE[1])
    points = prior[:, None, :2] + landmarks[frame, anchor].view(-1, 5, 2) * _VARIANCE[0] * prior[:, None, 2:]
    to_working = torch.tensor([net_w, net_h], device=loc.device, dtype=torch.float32).repeat(2)
    boxes = torch.cat([centers - sizes / 2, centers - sizes / 2 + sizes], dim=1) * to_working
    keep = nms_per_image(boxes, scores, frame, nms_threshold)
    to_full = torch.tensor([width / net_w, height / net_h], device=loc.device)
    return boxes[keep] * to_full.repeat(2), scores[keep], points[keep] * to_working[:2] * to_full


def box_gap(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """The largest distance (px, any coordinate) from a box to its nearest counterpart; inf if the counts differ."""
    if len(ours) != len(theirs):
        return math.inf
    if len(ours) == 0:
        return 0.0
    return float((ours[:, None].cpu() - theirs[None].cpu()).abs().amax(-1).amin(1).max())


def iou(a, b) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    overlap = width * height
    return overlap / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - overlap)


def interleaved(fns: dict[str, Callable], repeats: int, device: str) -> tuple[dict, dict[str, list[float]]]:
    """``repeats`` rounds of every function in turn (A B C A B C ...): the last outputs and each one's seconds."""
    outputs, times = {}, {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            outputs[name] = fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return outputs, times


@dataclass(eq=False)  # hashed by identity: a key of the box checks
class Variant:
    """A detector to time: ours (the default load), its baseline ("today"), whether facexlib runs it, and
    whether its weights are the real ones (then ours must give today's boxes to ``BOX_TOLERANCE``)."""

    name: str
    ours: object  # FaceDetector
    today: Callable[[torch.Tensor, int], torch.Tensor]  # (images, working size) -> full-size boxes
    today_label: str
    facexlib: bool = False
    real: bool = False


def retinaface_today(network, threshold: float) -> Callable:
    return lambda images, size: plain_retinaface_detect(network, images, threshold, size)[0]


def stage_boxes(detector, threshold: float) -> Callable:
    """``detect_faces`` with ``detector``: (images, working size) -> the full-size boxes."""
    from comfyui_gfpgan.face_pipeline.detect import detect_faces

    def detect(images, size):
        faces = detect_faces(detector, images, threshold=threshold, working_size=size).faces
        return torch.tensor([f.box for f in faces]).view(-1, 4)

    return detect


def make_variants(args, folder: Path, calibration: list[torch.Tensor]) -> list[Variant | str]:
    """The variants asked for; a string (the reason) for one that cannot run here."""
    from comfyui_gfpgan.face_detectors import load_detector, read_weights
    from comfyui_gfpgan.face_detectors.retinaface_net import RetinaFaceNet
    from comfyui_gfpgan.face_detectors.yolov5face import YoloFaceDetector, config_from_keys
    from comfyui_gfpgan.face_detectors.yolov5face_net import YoloV5FaceNet

    threshold = args.threshold
    variants: list[Variant | str] = []
    for name in args.variants:
        if name in ("mobilenet0.25", "resnet50"):
            path = WEIGHTS if name == "mobilenet0.25" else retinaface_resnet50_file(
                folder / "retinaface_resnet50.safetensors", calibration, threshold)
            plain = RetinaFaceNet(name)
            plain.load_state_dict(read_weights(path), strict=True)
            plain = plain.eval().requires_grad_(False).to(args.device)
            today = retinaface_today(plain, threshold)
            label = "real weights" if name == "mobilenet0.25" else "seeded"
            variants.append(Variant(f"RetinaFace {name} ({label})", load_detector(path, args.device), today, "today",
                                    facexlib=name == "mobilenet0.25" and args.device == "cpu",
                                    real=name == "mobilenet0.25"))
        else:
            size = name.removeprefix("yolov5")
            path = yolov5face_file(size, folder / f"yolov5{size}-face.pth", calibration, threshold)
            if path is None:
                variants.append(f"YOLOv5-face {size}: skipped, the reference package (codeformer) is not installed")
                continue
            state_dict = read_weights(path)
            plain = YoloFaceDetector(YoloV5FaceNet(*config_from_keys(state_dict)), size, path, optimise=False)
            plain.network.load_state_dict(state_dict, strict=True)
            plain.network.to(args.device)
            variants.append(Variant(f"YOLOv5-face {size} (seeded)", load_detector(path, args.device),
                                    stage_boxes(plain, threshold), "plain"))
    return variants


def facexlib_retinaface():
    """facexlib's RetinaFace (MobileNet-0.25) with the local weights: never its download paths."""
    from facexlib.detection.retinaface import RetinaFace
    from safetensors.torch import load_file

    detector = RetinaFace(network_name="mobile0.25", half=False, device="cpu")
    detector.load_state_dict(load_file(str(WEIGHTS)), strict=True)
    return detector.eval()


def to_bgr(images: torch.Tensor) -> np.ndarray:
    """``[1,3,H,W]`` RGB 0..1 -> HxWx3 uint8 BGR, facexlib's input."""
    return np.ascontiguousarray((images[0].permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)[:, :, ::-1])


def gfpganer_faces(facexlib, bgr: np.ndarray, threshold: float) -> list[tuple[float, ...]]:
    """The boxes GFPGANer keeps: facexlib at full size, eyes at least 5 px apart (eye_dist_threshold=5)."""
    from comfyui_gfpgan.face_pipeline.detect import GFPGANER_MIN_EYE_DISTANCE

    with torch.no_grad():
        found = facexlib.detect_faces(bgr, threshold)
    eyes = np.hypot(found[:, 7] - found[:, 5], found[:, 8] - found[:, 6])
    return [tuple(row[:4]) for row in found[eyes >= GFPGANER_MIN_EYE_DISTANCE]]


def time_cell(args, variant: Variant, images: torch.Tensor, size: int, facexlib) -> tuple[dict, int, dict]:
    """One cell: a warm-up round (allocator, kernels, anchor cache), then as many interleaved rounds as fit
    --cell-budget (at most --repeats, at least 1). The fastest seconds of each column, the rounds, the outputs."""
    from comfyui_gfpgan.face_pipeline.detect import detect_faces

    def ours():
        faces = detect_faces(variant.ours, images, threshold=args.threshold, working_size=size)
        return faces, torch.tensor([f.box for f in faces.faces]).view(-1, 4)

    fns = {"ours": ours, variant.today_label: lambda: variant.today(images, size)}
    if variant.facexlib:
        bgr = to_bgr(shrink(images, size))  # resized outside its timing: facexlib only detects

        def facexlib_detect():
            with torch.no_grad():
                return facexlib.detect_faces(bgr, args.threshold)

        fns["facexlib"] = facexlib_detect
    _, warm_up = interleaved(fns, 1, args.device)
    repeats = max(1, min(args.repeats, int(args.cell_budget / sum(t[0] for t in warm_up.values()))))
    outputs, times = interleaved(fns, repeats, args.device)
    return {name: min(t) for name, t in times.items()}, repeats, outputs


def detection_tables(args, variants: list[Variant | str], frames: dict[str, np.ndarray]) -> None:
    """Part 1: a table per variant, then the check of the boxes."""
    from comfyui_gfpgan.face_pipeline.detect import GFPGANER_MIN_EYE_DISTANCE, select_faces

    facexlib = facexlib_retinaface() if any(isinstance(v, Variant) and v.facexlib for v in variants) else None
    if args.device != "cpu":
        print("facexlib's detect_faces: not timed (its RetinaFace runs on the CPU only here)")
    print("\nms: the fastest of n interleaved rounds after a warm-up; faces: ours' after GFPGANer's eye filter (5 px); "
          "missed: GFPGANer's\nfaces (facexlib at full size) that ours does not find at this working size (IoU < 0.5)")
    gaps: dict[Variant, list[float]] = {}  # the box differences of each row
    for variant in variants:
        if isinstance(variant, str):
            print(f"\n{variant}")
            continue
        base = variant.today_label
        columns = ["ours", base] + ["facexlib"] * variant.facexlib
        ratios = [f"ours/{c}" for c in columns[1:]]
        print(f"\n== {variant.name} (load average {os.getloadavg()[0]:.2f})")
        print(f"{'frame':10s} {'working':>14s} {'n':>2s}" + "".join(f"{c + ' ms':>12s}" for c in columns)
              + "".join(f"{r:>14s}" for r in ratios) + f"{'faces':>7s}" + f"{'missed':>7s}" * variant.facexlib
              + f"  boxes, ours vs {base}")
        rate = 0.0  # the slowest column's seconds per working megapixel, to foresee long cells
        for rgb in frames.values():
            images = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div(255).to(args.device)
            height, width = images.shape[-2:]
            reference = gfpganer_faces(facexlib, to_bgr(images), args.threshold) if variant.facexlib else None
            shapes: dict[tuple[int, int], list[int]] = {}  # working shape -> the sizes that give it: one row
            for size in args.sizes:
                shapes.setdefault(working_shape(height, width, size), []).append(size)
            for working, same in shapes.items():
                size, lead = same[0], f"{width}x{height:<5d} {','.join(str(s or 'full') for s in same):>14s}"
                megapixels = working[0] * working[1] / 1e6
                if rate * megapixels > args.max_run:
                    print(f"{lead}    skipped: ~{rate * megapixels:.0f} s a run (over --max-run {args.max_run:g})")
                    continue
                seconds, repeats, outputs = time_cell(args, variant, images, size, facexlib)
                rate = max(seconds.values()) / megapixels  # the latest (largest) cell's: small ones overstate it
                (faces, boxes), theirs = outputs["ours"], outputs[base]
                gap = box_gap(boxes, theirs)
                gaps.setdefault(variant, []).append(gap)
                kept = select_faces(faces, min_eye_distance=GFPGANER_MIN_EYE_DISTANCE).faces
                row = (f"{lead} {repeats:2d}" + "".join(f"{seconds[c] * 1e3:12.1f}" for c in columns)
                       + "".join(f"{seconds['ours'] / seconds[c]:13.2f}x" for c in columns[1:]) + f"{len(kept):7d}")
                if variant.facexlib:
                    row += f"{sum(max((iou(r, f.box) for f in kept), default=0) < 0.5 for r in reference):7d}"
                count = f"{len(boxes)}" + (f" vs {len(theirs)}" if len(boxes) != len(theirs) else "")
                verdict = "" if not variant.real else " ok" if gap <= BOX_TOLERANCE else " DIFFER"
                print(f"{row}  {count} boxes, max {gap:.1e} px{verdict}", flush=True)
    print("\nboxes, ours vs today (YOLOv5-face: vs plain), the largest difference in full-size px:")
    for variant, found in gaps.items():
        held = (f"{'PASS' if max(found) <= BOX_TOLERANCE else 'FAIL'}, within {BOX_TOLERANCE:g} px" if variant.real
                else "seeded weights, not held to it")
        print(f"  {variant.name}: {max(found):.2g} px ({held}); "
              f"as many boxes in {sum(g < math.inf for g in found)}/{len(found)} rows")
    if any(not v.real for v in gaps):
        print("  (random weights carry the fold's rounding further; YOLOv5-face's seeded heads saturate on photos, "
              "boxes up to\n  the frame's size; tests/face_detectors/test_yolov5face.py holds its raw outputs to 1e-3 of their range)")


def best_seconds(fn: Callable, device: str, runs: int = 5) -> float:
    """The fastest of ``runs`` calls after a warm-up: a peak rate wants the least disturbed run."""
    fn()
    times = []
    for _ in range(runs):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


@torch.inference_mode()
def conv_census(network: torch.nn.Module, x: torch.Tensor, stem: list[torch.nn.Module]) -> tuple[float, float, float]:
    """One pass of ``network.features`` with every Conv2d hooked: FLOPs (2 x MACs), the share of them in the
    stem, and the bytes of the stem's convolution outputs (its activations: BatchNorm folded, ReLUs in place)."""
    stem_convs = {m for layer in stem for m in layer.modules() if isinstance(m, torch.nn.Conv2d)}
    flops, stem_flops, stem_bytes = [0.0], [0.0], [0.0]

    def count(conv, inputs, output):
        macs = output.numel() * conv.in_channels // conv.groups * math.prod(conv.kernel_size)
        flops[0] += 2 * macs
        if conv in stem_convs:
            stem_flops[0] += 2 * macs
            stem_bytes[0] += output.numel() * output.element_size()

    hooks = [m.register_forward_hook(count) for m in network.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        features = network.features(x)
        for heads in (network.ClassHead, network.BboxHead, network.LandmarkHead):  # every head, as a plain pass
            for head, f in zip(heads, features):
                head.conv1x1(f)
    finally:
        for hook in hooks:
            hook.remove()
    return flops[0], stem_flops[0] / flops[0], stem_bytes[0]


def floors(args, frame: np.ndarray) -> None:
    """Part 2: the arithmetic and memory floors of full-size MobileNet-0.25 on this device."""
    from comfyui_gfpgan.face_detectors import load_detector, read_weights
    from comfyui_gfpgan.face_detectors.retinaface import to_network_input
    from comfyui_gfpgan.face_detectors.retinaface_net import RetinaFaceNet
    from comfyui_gfpgan.face_pipeline.detect import detect_faces

    device = args.device
    images = torch.from_numpy(frame).permute(2, 0, 1)[None].float().div(255).to(device)
    height, width = images.shape[-2:]
    plain = RetinaFaceNet("mobilenet0.25")
    plain.load_state_dict(read_weights(WEIGHTS), strict=True)
    plain = plain.eval().to(device)
    flops, stem_share, stem_bytes = conv_census(plain, to_network_input(images), plain.stem())
    # the memory a whole-image pass must move: the frame read, each stem activation written and read back
    traffic = images.numel() * 4 + 2 * stem_bytes

    n = 4096
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    matmul = 2 * n**3 / best_seconds(lambda: a @ b, device)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(device).to(memory_format=torch.channels_last).requires_grad_(False)
    x = torch.randn(1, 64, 512, 512, device=device).contiguous(memory_format=torch.channels_last)
    conv_rate = 2 * 64 * 64 * 9 * 512 * 512 / best_seconds(lambda: conv(x), device)
    source = torch.empty(128 * 2**20, device=device).uniform_()  # 512 MiB, far beyond any cache
    target = torch.empty_like(source)
    bandwidth = 2 * source.numel() * 4 / best_seconds(lambda: target.copy_(source), device)  # read + write
    del a, b, x, source, target

    # ours again, beside the probes: a shared VM's speed drifts between part 1 and here
    detector = load_detector(WEIGHTS, device)
    fns = {"ours": lambda: detect_faces(detector, images, threshold=args.threshold)}
    interleaved(fns, 1, device)  # warm-up
    ours_seconds = min(interleaved(fns, args.repeats, device)[1]["ours"])
    arithmetic, memory = flops / matmul, traffic / bandwidth
    print(f"\n== Floor: RetinaFace MobileNet-0.25 at full size {width}x{height} on {device}")
    print(f"network: {flops / 1e9:.1f} GFLOP (convolutions, 2 x MACs, every head; {stem_share:.0%} in the stem); "
          f"stem activations {stem_bytes / 2**20:.0f} MiB")
    print(f"peak fp32: matmul {n}^3 {matmul / 1e9:.0f} GFLOPS, conv 64->64 3x3 on 512x512 {conv_rate / 1e9:.0f} GFLOPS "
          f"(best of 5); copy bandwidth {bandwidth / 1e9:.1f} GB/s (read + write)")
    print(f"arithmetic floor {flops / 1e9:.1f} GFLOP / {matmul / 1e9:.0f} GFLOPS = {arithmetic * 1e3:.1f} ms "
          f"({flops / conv_rate * 1e3:.1f} ms at the conv rate)")
    print(f"memory floor (whole-image pass) {traffic / 2**20:.0f} MiB / {bandwidth / 1e9:.1f} GB/s "
          f"= {memory * 1e3:.1f} ms")
    print(f"ours (best of {args.repeats}) {ours_seconds * 1e3:.1f} ms = {ours_seconds / arithmetic:.1f}x the "
          f"arithmetic floor, {ours_seconds / memory:.1f}x the memory floor; it runs at "
          f"{flops / ours_seconds / 1e9:.1f} GFLOPS")


def folder_share(args, frames: int = 4) -> None:
    """Part 3: detection's share of ``comfyui-gfpgan restore`` on ``frames`` 2048x1080 photos."""
    import cv2
    from safetensors.torch import save_file

    from factories import tile_photos

    import comfyui_gfpgan.face_pipeline.pipeline as pipeline
    from comfyui_gfpgan.jobs import cli
    from comfyui_gfpgan.face_detectors.interface import FaceDetector
    from comfyui_gfpgan.jobs.folder_job import job_dtype
    from comfyui_gfpgan.gfpgan_arch.testing import seeded_clean_network

    photos = [(cv2.imread(str(SHARED / "images" / file)), box) for file, box in PHOTOS]  # BGR, as written
    spent = {"detect stage": 0.0, "detector.detect": 0.0}

    def timing(name, fn):
        def wrapped(*a, **k):
            sync(args.device)
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                sync(args.device)
                spent[name] += time.perf_counter() - start
        return wrapped

    with tempfile.TemporaryDirectory(prefix="bench_detect_folder_") as work:
        work = Path(work)
        (work / "in").mkdir()
        for index in range(frames):  # two faces each, of different sizes per photo
            widths = (120 + 30 * index, 80 + 20 * index)
            image, _ = tile_photos(photos[index % 2:] + photos[:index % 2], 1080, 2048, 2, widths)
            cv2.imwrite(str(work / "in" / f"frame_{index}.png"), image)
        model = work / "gfpgan-seeded.safetensors"
        save_file({k: v.contiguous() for k, v in seeded_clean_network(0).state_dict().items()}, str(model))
        command = ["restore", str(work / "in"), "-o", str(work / "out"), "--model", str(model),
                   "--detector", str(WEIGHTS), "--device", args.device]
        detectors = {cls: cls.detect for cls in FaceDetector.__subclasses__()}
        stage = pipeline.detect_faces
        try:  # wrapped where the job looks them up: the stage in pipeline, the network call on its class
            pipeline.detect_faces = timing("detect stage", stage)
            for cls, detect in detectors.items():
                cls.detect = timing("detector.detect", detect)
            log = io.StringIO()
            start = time.perf_counter()
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                status = cli.main(command)
            total = time.perf_counter() - start
        finally:
            pipeline.detect_faces = stage
            for cls, detect in detectors.items():
                cls.detect = detect
    summary = log.getvalue().strip().splitlines()[-1:] or ["(no output)"]
    print(f"\n== Folder job: comfyui-gfpgan restore, {frames} photos 2048x1080 with 2 faces each, CLI defaults "
          f"(detection at full size; --dtype auto: {str(job_dtype('auto', args.device)).removeprefix('torch.')}), "
          f"on {args.device}")
    print(f"exit {status}: {summary[0].split(': ', 1)[-1].split(' (')[0]}")
    print(f"whole command {total:.2f} s (models loaded, read, detect, restore, paste, write); "
          + "; ".join(f"{name} {seconds:.2f} s = {seconds / total:.1%}" for name, seconds in spent.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs per cell after the warm-up (the fastest counts)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[640, 1024, 0], help="working sizes (0 = full size)")
    parser.add_argument("--frames", nargs="+", default=list(FRAMES), choices=list(FRAMES))
    parser.add_argument("--variants", nargs="+", default=["mobilenet0.25", "resnet50", "yolov5n", "yolov5l"],
                        choices=["mobilenet0.25", "resnet50", "yolov5n", "yolov5l"])
    parser.add_argument("--threshold", type=float, default=0.97, help="detection confidence (GFPGANer's)")
    parser.add_argument("--max-run", type=float, default=4.0,
                        help="skip a cell whose runs are expected (from the smaller cells) to take longer (s)")
    parser.add_argument("--cell-budget", type=float, default=20.0,
                        help="seconds of timed rounds per cell: longer cells get fewer repeats (n, at least 1)")
    parser.add_argument("--no-floor", action="store_true", help="leave out part 2")
    parser.add_argument("--no-folder", action="store_true", help="leave out part 3")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")
    if args.repeats < 1:
        parser.error("--repeats: at least 1")
    warnings.filterwarnings("ignore", message="torch.meshgrid")  # facexlib's priors, once per call

    started = time.perf_counter()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    gpu = f", {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else ""
    print(f"{cpu}, {os.cpu_count()} CPUs{gpu}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"device {args.device}; threshold {args.threshold}; load average {os.getloadavg()[0]:.2f}")
    frames = {name: compose_frame(name) for name in args.frames}
    four_k = compose_frame("4k")
    calibration = [shrink(torch.from_numpy(compose_frame(name)).permute(2, 0, 1)[None].float().div(255), 640)
                   for name in ("512", "4k")]
    with tempfile.TemporaryDirectory(prefix="bench_detect_") as folder:
        variants = make_variants(args, Path(folder), calibration)
        if set(args.variants) - {"mobilenet0.25"}:
            print(f"seeded files made ({time.perf_counter() - started:.0f} s), calibrated to at most {CANDIDATES} "
                  "anchors above the threshold on the 512 frame and the 4K one at 640, as a trained detector's "
                  "faces give (seeded_detectors.py)")
        detection_tables(args, variants, frames)
    if not args.no_floor:
        floors(args, four_k)
    if not args.no_folder:
        folder_share(args)
    print(f"\n(whole run {time.perf_counter() - started:.0f} s; load average now {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
