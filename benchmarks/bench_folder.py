"""The folder job streamed (``FolderJob.restore_files``) against restoring the same files one by one, in one run.

    python benchmarks/bench_folder.py [--device cpu|cuda] [--images 32] [--jobs 4] [--chunk 8] [--crop 512]

A folder of ``--images`` files made from the shared photos (one face, two faces, none), restored by
the same seeded GFPGANv1Clean (``--crop`` 512: the official config; 128 or 256: a small one, for a
quick run on a CPU) and the real MobileNet-0.25 detector, twice: the baseline reads, restores
(``restore_faces_in_images``) and writes each file in turn; ours streams them (``--jobs`` I/O threads,
``--chunk`` faces per network call across images). Printed: wall and process CPU seconds, images/s and
faces/s of each, our time as a ratio of the baseline's, and how many written files differ (batched fp32
rounding, see the README). On a CPU the network dominates and there is little to overlap; on an
oversubscribed machine set OMP_NUM_THREADS (2-thread OpenMP regions then stall on descheduled peers).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
SHARED = ROOT.parent / "shared"
SMALL = {128: dict(out_size=128, num_style_feat=64, channel_multiplier=1, num_mlp=2, narrow=0.25),
         256: dict(out_size=256, narrow=0.25, num_mlp=2), 512: {}}


def make_inputs(folder: Path, count: int) -> None:
    astronaut = cv2.imread(str(SHARED / "images" / "astronaut.png"))
    grace = cv2.imread(str(SHARED / "images" / "grace_hopper.jpg"))
    pair = np.full((600, 1150, 3), 128, np.uint8)
    pair[:512, :512], pair[:, 600:1112] = astronaut, grace
    blank = np.full((480, 640, 3), 90, np.uint8)
    for index in range(count):
        image = (astronaut, grace, pair, blank)[index % 4]
        cv2.imwrite(str(folder / f"{index:04d}.{'jpg' if index % 4 == 1 else 'png'}"), np.roll(image, index, axis=1))


def per_file(job, pairs) -> int:
    """The baseline: each file read, restored alone and written, in turn; the faces restored."""
    from comfyui_gfpgan.face_pipeline.pipeline import restore_faces_in_images
    from comfyui_gfpgan.folder_job import read_image, write_image

    faces = 0
    for path, target in pairs:
        image, depth = read_image(path)
        result = restore_faces_in_images(torch.from_numpy(image).permute(2, 0, 1)[None], job.restorer, job.detector,
                                         detect=job.spec.detect, restore=job.restore, paste=job.spec.paste)
        faces += len(result.faces)
        if result.faces.faces:
            write_image(target, result.images[0].permute(1, 2, 0).numpy(), depth)
        else:
            shutil.copyfile(path, target)
    return faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--chunk", type=int, help="faces per network call (default: the device's)")
    parser.add_argument("--crop", type=int, choices=sorted(SMALL), default=512)
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    args = parser.parse_args()

    from safetensors.torch import save_file

    from comfyui_gfpgan.face_pipeline.pipeline import RestoreSettings
    from comfyui_gfpgan.folder_job import FolderJob, JobSpec
    from factories import seeded_clean_network

    with tempfile.TemporaryDirectory() as temp:
        temp = Path(temp)
        model = temp / "seeded.safetensors"
        network = seeded_clean_network(seed=0, **SMALL[args.crop])
        save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(model))
        inputs = temp / "in"
        inputs.mkdir()
        make_inputs(inputs, args.images)
        spec = JobSpec(model=str(model), detector=str(SHARED / "weights" / "retinaface_mobilenet0.25.safetensors"),
                       device=args.device, dtype=args.dtype,
                       restore=RestoreSettings(noise="seeded", chunk_size=args.chunk))
        job = FolderJob(spec)
        files = sorted(inputs.iterdir())
        per_file(job, [(path, temp / f"warm-up{path.suffix}") for path in files[:4]])  # each shape: oneDNN, CUDA
        timings = {}
        for name in ("per file", "streamed"):
            out = temp / name
            out.mkdir()
            pairs = [(path, out / path.name) for path in files]
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start, cpu = time.perf_counter(), time.process_time()
            if name == "per file":
                faces = per_file(job, pairs)
            else:
                faces = sum(outcome.faces for outcome in job.restore_files(pairs, jobs=args.jobs))
            timings[name] = (time.perf_counter() - start, time.process_time() - cpu, faces)
        differing = sum((temp / "per file" / p.name).read_bytes() != (temp / "streamed" / p.name).read_bytes()
                        for p in files)
    chunk = args.chunk or ("8" if args.device.startswith("cuda") else "1")
    print(f"{args.images} images, {args.crop} px crops, {args.device}, {args.dtype}, --jobs {args.jobs} --chunk {chunk}")
    base = timings["per file"][0]
    for name, (seconds, cpu, faces) in timings.items():
        print(f"{name:9s} {seconds:7.2f} s (CPU {cpu:7.2f} s)  {args.images / seconds:6.2f} images/s  "
              f"{faces / seconds:6.2f} faces/s  {seconds / base:.2f}x")
    print(f"files that differ: {differing} of {args.images}")


if __name__ == "__main__":
    main()
