"""Which working resolution finds GFPGANer's faces, and at what cost: faces found and detection time.

    python benchmarks/bench_detect.py [--device cuda] [--repeats 3] [--sizes 640 1024 0]

On the benchmark's frames (benchmarks/bench_pipeline.py, including the small-face ones) GFPGANer's
detection (facexlib's FaceRestoreHelper.get_face_landmarks_5 at full size, eye_dist_threshold=5) is
timed beside ours at each working size (0 = full size), with the same detector weights and the
default DetectSettings otherwise. "missed" counts GFPGANer's faces that a policy does not find
(matched by box IoU >= 0.5). Times are the median of --repeats runs after a warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from bench_pipeline import CASES, SHARED, compose, sync  # run as a script: benchmarks/ is on sys.path

WEIGHTS = SHARED / "weights" / "retinaface_mobilenet0.25.safetensors"


def iou(a, b) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    overlap = width * height
    return overlap / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - overlap)


def timed(fn, device: str, repeats: int):
    fn()  # warm-up: allocator, kernels, anchor cache
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def main() -> None:
    from gfpganer_reference import make_face_helper

    from comfyui_gfpgan.face_pipeline.detect import detect_faces, load_detector, select_faces
    from comfyui_gfpgan.face_pipeline.pipeline import DetectSettings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[640, 1024, 0], help="working sizes (0 = full size)")
    parser.add_argument("--cases", nargs="+", default=["four_faces", "eight_faces", "four_small_faces", "eight_small_faces",
                                                   "eight_tiny_faces"],
                        choices=[c for c in CASES if CASES[c][3] == 1])
    args = parser.parse_args()
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"median of {args.repeats}")
    helper = make_face_helper(WEIGHTS)
    helper.device = torch.device(args.device)
    helper.face_det.to(args.device)
    helper.face_det.device = torch.device(args.device)
    helper.face_det.mean_tensor = helper.face_det.mean_tensor.to(args.device)
    detector = load_detector(WEIGHTS, args.device)
    settings = DetectSettings()
    names = ["GFPGANer"] + [f"ours {size or 'full'}" for size in args.sizes]
    print(f"{'frame':28s}" + "".join(f"{name:>24s}" for name in names))
    for case in args.cases:
        height, width, count, _, _ = CASES[case]
        frame = compose(case)[0]
        bgr = np.ascontiguousarray(frame[:, :, ::-1])

        def gfpganer():
            helper.clean_all()
            helper.det_faces = []
            helper.read_image(bgr)
            with torch.no_grad():
                helper.get_face_landmarks_5(only_center_face=False, eye_dist_threshold=5)
            return [tuple(float(v) for v in row[:4]) for row in helper.det_faces]

        reference, reference_time = timed(gfpganer, args.device, args.repeats)
        cells = [f"{len(reference)} faces {reference_time:6.2f}s"]
        images = torch.from_numpy(frame).permute(2, 0, 1)[None].float().div(255).to(args.device)
        for size in args.sizes:
            def ours():
                faces = detect_faces(detector, images, threshold=settings.threshold, working_size=size)
                return [f.box for f in select_faces(faces, min_eye_distance=settings.min_eye_distance).faces]

            boxes, seconds = timed(ours, args.device, args.repeats)
            missed = sum(max((iou(r, b) for b in boxes), default=0) < 0.5 for r in reference)
            cells.append(f"{len(boxes)} ({missed} missed) {seconds:6.2f}s")
        print(f"{case + f' {width}x{height}':28s}" + "".join(f"{cell:>24s}" for cell in cells), flush=True)


if __name__ == "__main__":
    main()
