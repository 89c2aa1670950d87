"""Folder throughput: ``comfyui-gfpgan restore`` against GFPGANer's per-image loop, and through ``--ray``.

    python benchmarks/bench_folder.py [--photos 32] [--workers 1 2] [--dtype fp32] [--no-ray] [--keep DIR]

A folder of photos of mixed sizes with 0-3 faces each is composed from the shared photos (deterministic;
PNG and JPEG), and the real RetinaFace (MobileNet-0.25) is first run on each to check that it finds the
faces intended. Then, each in a fresh process, on the same seeded GFP-GAN weights (official v1.3/v1.4
config) and the same detector, on the CPU:

- GFPGANer's loop (inference_gfpgan.py's algorithm: read, enhance, write the restored image; it also
  saves every face's crops and a comparison image, left out here, which only spares the baseline work):
  facexlib's FaceRestoreHelper with the upstream network (tests/gfpganer_reference.py);
- our CLI, single process;
- our CLI with ``--ray --workers N`` on a new local Ray, for each N of --workers.

Each time is the whole command's wall time, as a user times a folder: from launch to exit, so it
includes imports and model loading (and Ray's start and its workers' model loading). images/s and
faces/s are per that time; "time ratio" is a run's time / the baseline's in the same run (lower is
better). Ray's rows also say how many outputs are byte-equal to the single-process CLI's (equal where
a worker computes with as many torch threads as the CLI: one worker on all CPUs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_pipeline import PHOTOS, ROOT, SHARED  # run as a script: benchmarks/ is on sys.path

sys.path.insert(0, str(ROOT / "tests"))
WEIGHTS = SHARED / "weights" / "retinaface_mobilenet0.25.safetensors"

# (faces, height, width): 16 kinds of photo; photos 16-31 repeat them with the two source photos swapped
# and the other file format. A faceless photo is a part of a shared photo below its face, resized.
KINDS = [(0, 480, 640), (1, 512, 512), (1, 600, 512), (2, 768, 1024), (3, 960, 1280), (1, 1080, 1920),
         (2, 900, 1600), (0, 1024, 1024), (1, 768, 768), (3, 1200, 1600), (2, 512, 1024), (0, 720, 1280),
         (1, 384, 384), (2, 1080, 1920), (3, 768, 1024), (1, 900, 1200)]
FACELESS_ROWS = {"astronaut.png": (330, 512), "grace_hopper.jpg": (400, 600)}  # below each photo's face


def compose_folder(folder: Path, count: int) -> list[tuple[str, int]]:
    """Write ``count`` photos into ``folder``: their names and the faces each was made with."""
    import cv2

    from factories import tile_photos

    sources = [(cv2.imread(str(SHARED / "images" / name)), box, name) for name, box in PHOTOS]  # BGR throughout
    made = []
    for index in range(count):
        faces, height, width = KINDS[index % len(KINDS)]
        variant = index // len(KINDS) % 2
        order = sources if variant == 0 else sources[::-1]
        rotated = order[index % 2:] + order[:index % 2]  # which photo leads alternates
        lead, _, name = rotated[0]
        exact = [photo for photo, _, _ in sources if photo.shape[:2] == (height, width)]
        if faces == 0:
            top, bottom = FACELESS_ROWS[name]
            image = cv2.resize(lead[top:bottom], (width, height), interpolation=cv2.INTER_AREA)
        elif faces == 1 and exact:
            image = exact[0]  # a shared photo as it is
        elif faces == 1 and height == width and lead.shape[0] == lead.shape[1]:
            image = cv2.resize(lead, (width, height), interpolation=cv2.INTER_AREA)
        else:
            image, _ = tile_photos([(photo, box) for photo, box, _ in rotated], height, width, faces)
        suffix = (".png", ".jpg")[(index + variant) % 2]
        file_name = f"photo_{index:02d}_{faces}face{'s' * (faces != 1)}_{width}x{height}{suffix}"
        cv2.imwrite(str(folder / file_name), image, [cv2.IMWRITE_JPEG_QUALITY, 95] if suffix == ".jpg" else [])
        made.append((file_name, faces))
    return made


def detected_faces(folder: Path, names: list[str]) -> list[int]:
    """Faces our pipeline's detection finds in each photo (the default DetectSettings: GFPGANer's)."""
    import torch

    from comfyui_gfpgan.face_pipeline.detect import detect_faces, load_detector, select_faces
    from comfyui_gfpgan.face_pipeline.pipeline import DetectSettings
    from comfyui_gfpgan.jobs.folder_job import read_image

    detector, settings, counts = load_detector(WEIGHTS), DetectSettings(), []
    with torch.inference_mode():
        for name in names:
            image = torch.from_numpy(read_image(folder / name)[0]).permute(2, 0, 1)[None]
            faces = select_faces(detect_faces(detector, image, threshold=settings.threshold,
                                              working_size=settings.working_size),
                                 min_eye_distance=settings.min_eye_distance)
            counts.append(len(faces.faces))
    return counts


def gfpganer_loop(folder: Path, out: Path, model: Path) -> None:
    """Child process: GFPGANer's per-image loop over ``folder``; prints each file's face count as JSON."""
    import cv2
    import torch
    from spandrel.architectures.GFPGAN.__arch.gfpganv1_clean_arch import GFPGANv1Clean

    from comfyui_gfpgan.gfpgan_arch.testing import OFFICIAL_CLEAN_CONFIG
    from gfpganer_reference import gfpganer_enhance, make_face_helper
    from safetensors.torch import load_file

    network = GFPGANv1Clean(**OFFICIAL_CLEAN_CONFIG, decoder_load_path=None, fix_decoder=False).eval()
    network.load_state_dict(load_file(str(model)))
    helper = make_face_helper(WEIGHTS)
    faces = {}
    with torch.no_grad():
        for path in sorted(folder.iterdir()):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            restored, faces[path.name] = gfpganer_enhance(helper, network, image)
            cv2.imwrite(str(out / path.name), restored)
    print(json.dumps(faces))


def timed(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if run.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({run.returncode}):\n{run.stderr[-4000:]}")
    return wall, run.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=32, help="the first N of the 32 photos (8: a quick check)")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="--ray runs with these --workers")
    parser.add_argument("--no-ray", action="store_true", help="leave out the --ray runs")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "auto"),
                        help="our CLI's --dtype (fp32: as the baseline computes; auto: bf16 where native)")
    parser.add_argument("--keep", help="compose into and write outputs under this folder (default: a temporary one)")
    parser.add_argument("--child-gfpganer", nargs=3, metavar=("FOLDER", "OUT", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_gfpganer:
        return gfpganer_loop(*map(Path, args.child_gfpganer))
    if not 1 <= args.photos <= 2 * len(KINDS):
        sys.exit(f"--photos: 1 to {2 * len(KINDS)}")

    import torch
    from safetensors.torch import save_file

    from comfyui_gfpgan.gfpgan_arch.testing import seeded_clean_network

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="gfpgan_bench_folder_"))
    shutil.rmtree(work / "in", ignore_errors=True)
    (work / "in").mkdir(parents=True)
    model = work / "gfpgan-seeded.safetensors"
    save_file({k: v.contiguous() for k, v in seeded_clean_network(0).state_dict().items()}, str(model))
    made = compose_folder(work / "in", args.photos)
    names = [name for name, _ in made]
    found = detected_faces(work / "in", names)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    print(f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"load average at start {os.getloadavg()[0]:.2f}; our --dtype {args.dtype}")

    runs = {}
    out = work / "out_gfpganer"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    wall, stdout = timed([sys.executable, __file__, "--child-gfpganer", str(work / "in"), str(out), str(model)])
    baseline_faces = json.loads(stdout.strip().splitlines()[-1])
    runs["GFPGANer loop"] = wall

    print(f"\n{len(names)} photos: name, faces made / found by ours / by GFPGANer's helper")
    for (name, faces), ours in zip(made, found):
        flag = "" if faces == ours == baseline_faces[name] else "   <- differs"
        print(f"  {name:36s} {faces} / {ours} / {baseline_faces[name]}{flag}")
    total_faces = sum(found)
    print(f"  faces: {total_faces} (ours), {sum(baseline_faces.values())} (GFPGANer); "
          f"{sum(1 for f in found if f == 0)} photos without a face")

    cli = [sys.executable, "-m", "comfyui_gfpgan", "restore", str(work / "in"), "--model", str(model),
           "--detector", str(WEIGHTS), "--dtype", args.dtype, "--overwrite"]
    runs["ours, CLI"] = timed([*cli, "-o", str(work / "out_cli")])[0]
    equal = {}
    for workers in [] if args.no_ray else args.workers:
        label = f"ours, --ray --workers {workers}"
        target = work / f"out_ray_{workers}"
        runs[label] = timed([*cli, "-o", str(target), "--ray", "--workers", str(workers)])[0]
        equal[label] = sum((target / n).read_bytes() == (work / "out_cli" / n).read_bytes() for n in names)

    base = runs["GFPGANer loop"]
    print(f"\n{'run':28s} {'wall':>8s} {'images/s':>9s} {'faces/s':>8s} {'time ratio':>11s}")
    for label, wall in runs.items():
        note = f"  outputs byte-equal to the CLI's: {equal[label]}/{len(names)}" if label in equal else ""
        print(f"{label:28s} {wall:7.1f}s {len(names) / wall:9.3f} {total_faces / wall:8.3f} {wall / base:10.2f}x{note}")
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
