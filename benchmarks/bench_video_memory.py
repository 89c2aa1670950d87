"""Peak memory of a long video batch through the all-in-one node, as a multiple of one output batch.

    python benchmarks/bench_video_memory.py [--frames 60 120] [--faces-every 30] [--working-size 640]

Each batch size runs in a fresh subprocess: the Face Restore All-in-One (GFPGAN) node's ``execute`` (as ComfyUI calls
it; tests/comfy_stub stands in for ComfyUI where it is not importable) on 1920x1080 float32 frames held
as ComfyUI holds an IMAGE ([B,H,W,C]), with two faces (the shared photos) in the last frame of every
``--faces-every`` frames and in the final one, landmark smoothing on, a seeded official-size
GFPGANv1Clean in fp32 and the real MobileNet-0.25 detector. Extra peak = VmHWM during the node's run minus VmRSS once the models are loaded and the input
batch exists (the high-water mark is reset there). One output batch = the IMAGE the node returns
(B x 1080 x 1920 x 3 float32); the MASK output adds a third of that. Two sizes give the growth per
output byte (slope) and the fixed per-chunk working set (intercept): what a 1000-frame batch would take.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GFPGAN_TEST_ASSETS", ROOT.parent / "shared"))
HEIGHT, WIDTH = 1080, 1920
PHOTOS = (("astronaut.png", (177.9, 56.8, 273.1, 177.2)), ("grace_hopper.jpg", (177.7, 106.5, 353.9, 327.7)))


def _status_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))


def run_child(frames: int, faces_every: int, working_size: int) -> dict:
    import cv2
    import torch
    from safetensors.torch import save_file

    sys.path.insert(0, str(ROOT / "tests"))
    if importlib.util.find_spec("comfy_api") is None:
        sys.path.insert(0, str(ROOT / "tests" / "comfy_stub"))
    from factories import seeded_clean_network, tile_photos

    detector_file = SHARED / "weights" / "retinaface_mobilenet0.25.safetensors"
    if not detector_file.is_file():
        sys.exit(f"{detector_file} not found (set GFPGAN_TEST_ASSETS to the shared assets)")
    models = Path(tempfile.mkdtemp(prefix="bench_video_memory_"))
    (models / "facerestore_models").mkdir()
    (models / "facedetection").mkdir()
    state = {k: v.contiguous() for k, v in seeded_clean_network(seed=0).state_dict().items()}
    save_file(state, str(models / "facerestore_models" / "seeded.safetensors"))
    del state
    (models / "facedetection" / "retinaface.safetensors").symlink_to(detector_file)
    import folder_paths

    folder_paths.models_dir = str(models)
    import comfyui_gfpgan.nodes.extension as nodes

    model = nodes.LoadGFPGANModel.execute("seeded.safetensors", "fp32").result[0]
    detector = nodes.LoadFaceDetector.execute("retinaface.safetensors").result[0]

    photos = [(cv2.imread(str(SHARED / "images" / name))[:, :, ::-1], box) for name, box in PHOTOS]
    canvas, _ = tile_photos(photos, HEIGHT, WIDTH, 2)
    with_faces = torch.from_numpy(canvas).float() / 255
    images = torch.full((frames, HEIGHT, WIDTH, 3), 0.5)  # a video as LoadVideo gives it: [B,H,W,C] float32
    # Faces at the end of every block and in the last frame: the network's working set then comes on top
    # of an output that is almost fully written, the worst case.
    face_frames = sorted({*range(faces_every - 1, frames, faces_every), frames - 1})
    for i in face_frames:
        images[i] = torch.roll(with_faces, shifts=4 * i, dims=1)
    del with_faces

    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    baseline = _status_kib("VmRSS")
    start = time.perf_counter()
    out, mask = nodes.GFPGANFaceRestore.execute(
        images, model, detector, 1.0, 1.0, "feathered", 1.0, False, 0.97, "all", 1, 0, 0, working_size,
        "fixed", 0, 0.5,
    ).result
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    shutil.rmtree(models)
    faceless = [i for i in range(frames) if i not in face_frames]
    assert torch.equal(out[faceless], images[faceless]), "faceless frames changed"
    return {
        "frames": frames,
        "faces": 2 * len(face_frames),
        "output_bytes": out.numel() * out.element_size(),
        "mask_bytes": mask.numel() * mask.element_size(),
        "extra_peak_bytes": (peak - baseline) * 1024,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[60, 120])
    parser.add_argument("--faces-every", type=int, default=30,
                        help="two faces in the last of every N frames and in the final frame, the rest faceless")
    parser.add_argument("--working-size", type=int, default=640, help="detection's short side (0 = full size)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(run_child(args.child, args.faces_every, args.working_size)))
        return

    rows = []
    for frames in args.frames:
        command = [sys.executable, __file__, "--child", str(frames), "--faces-every", str(args.faces_every),
                   "--working-size", str(args.working_size)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{frames} frames failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    gb = 1e9
    print(f"Face Restore All-in-One (GFPGAN), {WIDTH}x{HEIGHT} float32 frames, 2 faces every {args.faces_every} frames, "
          f"fp32 on CPU, working_size {args.working_size}")
    print("| frames | faces | output IMAGE | extra peak RSS | extra peak / output | time |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['frames']} | {row['faces']} | {row['output_bytes'] / gb:.2f} GB | "
              f"{row['extra_peak_bytes'] / gb:.2f} GB | {row['extra_peak_bytes'] / row['output_bytes']:.2f}x | "
              f"{row['seconds']:.0f} s |")
    if len(rows) >= 2:
        small, large = rows[0], rows[-1]
        grown = large["extra_peak_bytes"] - small["extra_peak_bytes"]
        slope = grown / (large["output_bytes"] - small["output_bytes"])
        fixed = large["extra_peak_bytes"] - slope * large["output_bytes"]
        mask_share = large["mask_bytes"] / large["output_bytes"]
        print(f"growth: {slope:.2f} bytes of peak per output byte (IMAGE 1 + MASK {mask_share:.2f}), "
              f"fixed working set {fixed / gb:.2f} GB")
        output = 1000 * HEIGHT * WIDTH * 3 * 4
        extra = slope * output + fixed
        print(f"1000 frames (extrapolated): output {output / gb:.1f} GB, extra peak about {extra / gb:.1f} GB "
              f"({extra / output:.2f}x)")


if __name__ == "__main__":
    main()
