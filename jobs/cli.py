"""Command-line interface: ``comfyui-gfpgan {restore,inspect,convert,make-test-model,download,migrate-workflow}``."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from ..face_restorers.interface import DTYPE_CHOICES  # one list for the CLI and the nodes

class UserError(Exception):
    """An error to print as one line, without a traceback."""


def printable(text: object) -> str:
    """``text`` with control and invisible characters escaped (``\\n``, ``\\x1b``, ``\\u202e``): a file name
    cannot end our line, move the cursor or forge a line of its own."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in str(text))


def _say(line: str, lead: str = "") -> None:
    """One line on stderr in one write (``lead``, e.g. a newline that leaves the progress bar, kept as it is): Ray
    Data's logger writes from its own thread, and ``print``'s separate newline could land after one of its lines."""
    sys.stderr.write(lead + printable(line) + "\n")
    sys.stderr.flush()


class _Progress:
    """The restore command's progress on stderr: done/total files, files/s, faces/s and the time left (redrawn at
    most every ``interval`` seconds; the last line ends with a newline), and the throughput for the summary."""

    def __init__(self, total: int, interval: float = 0.5, show: bool = True):
        self.clock = time.monotonic
        self.total, self.interval, self.show, self.done, self.faces = total, interval, show, 0, 0
        self.kinds = {"image": 0, "video": 0}  # files read and written (the summary counts no failure as an image)
        self.started = self.drawn = self.file_done = self.clock()
        self.draw()

    def update(self, faces: int, kind: str | None = None) -> None:
        """One file done: ``kind`` is "image" or "video" where it was restored or written unchanged."""
        self.file_done = self.clock()
        self.done += 1
        self.faces += faces
        if kind:
            self.kinds[kind] += 1
        if self.done >= self.total or self.clock() - self.drawn >= self.interval:
            self.draw()

    def rates(self) -> tuple[float, float, float]:
        """Seconds so far, files/s and faces/s."""
        seconds = max(self.clock() - self.started, 1e-9)
        return seconds, self.done / seconds, self.faces / seconds

    def draw(self) -> None:
        self.drawn = self.clock()
        if not self.show:  # another progress display (Ray Data's) is on screen
            return
        width = 30
        filled = int(width * self.done / max(1, self.total))
        line = f"\rrestoring [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
        if self.done:
            _, files, faces = self.rates()
            left = (self.total - self.done) / files
            line += f"  {files:.2f} files/s  {faces:.2f} faces/s  ETA {int(left) // 60}:{int(left) % 60:02d}"
        print(line, end="\n" if self.done >= self.total else "", file=sys.stderr, flush=True)

    def video(self, path: Path, frames: int) -> None:
        """Where a long video has got to: drawn on the bar's line, which the next file's update redraws."""
        if not self.show or self.clock() - self.drawn < self.interval:
            return
        self.drawn = self.clock()
        seconds = max(self.clock() - self.file_done, 1e-9)  # videos come one at a time: since the last file
        print(f"\rrestoring {printable(path.name)}: {frames} frames  {frames / seconds:.2f} frames/s", end="",
              file=sys.stderr, flush=True)

    def summary(self) -> str:
        """``2 images, 1 video in 3.1 s: 0.97 files/s, 1.20 faces/s``: the files written, not those that failed."""
        seconds, _, faces = self.rates()
        images, videos = self.kinds["image"], self.kinds["video"]
        done = ", ".join(f"{count} {kind}{'s' * (count != 1)}" for kind, count in self.kinds.items() if count)
        unit = "images" if not videos else "videos" if not images else "files"
        return f"{done} in {seconds:.1f} s: {(images + videos) / seconds:.2f} {unit}/s, {faces / seconds:.2f} faces/s"


def resolve_device(name: str | None) -> str:
    """The device ``--device`` names (default: cuda if there is one, else cpu), checked before any model loads."""
    import torch

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as error:
        raise UserError(f"--device {name}: no device name; use cpu, cuda, cuda:N or mps") from error
    backends = {"cpu": None, "cuda": torch.cuda, "mps": torch.backends.mps}
    if device.type not in backends:
        raise UserError(f"--device {name}: not a device this tool runs on; use cpu, cuda, cuda:N or mps")
    backend = backends[device.type]
    if backend is not None and not backend.is_available():
        build = " (a CPU-only build of torch)" if device.type == "cuda" and not torch.version.cuda else ""
        raise UserError(f"--device {name}: torch {torch.__version__}{build} finds no {device.type.upper()} device here")
    count = torch.cuda.device_count() if device.type == "cuda" else 1
    if device.index is not None and device.index >= count:
        raise UserError(f"--device {name}: there {'is' if count == 1 else 'are'} only {count} {device.type.upper()} "
                        f"device{'' if count == 1 else 's'} ({device.type}:0 to {device.type}:{count - 1})")
    return str(device)


def _output_folder(name: str) -> Path:
    """``-o``'s folder, checked before anything runs; it is made at the first write, so a run that fails at once
    leaves no empty folder behind."""
    if not name:
        raise UserError("-o: an empty name; write -o . for the current folder")
    out_dir = Path(name)
    existing = next(path for path in (out_dir, *out_dir.parents) if path.exists())
    if not existing.is_dir():
        raise UserError(f"-o {name}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"-o {name}: cannot write in {existing} (permission denied)")
    return out_dir


def cmd_restore(args: argparse.Namespace) -> int:
    from contextlib import closing

    from ..face_pipeline.pipeline import DetectSettings, PasteSettings, RestoreSettings
    from .folder_job import OUTCOMES, FolderJob, JobSpec, check_jobs, collect_inputs, plan_targets
    from .video_file import is_video

    ray_settings = None
    if args.ray is not None:  # Ray's settings and import are checked before anything is read or written
        from .ray_job import RaySettings, import_ray

        ray_settings = RaySettings(address=args.ray, workers=args.workers, worker_cpus=args.worker_cpus,
                                   worker_gpus=args.worker_gpus, device=args.device)
        import_ray()
    elif (args.workers, args.worker_cpus, args.worker_gpus) != (None, None, None):
        raise UserError("--workers, --worker-cpus and --worker-gpus size the workers of --ray")
    out_dir = _output_folder(args.output)
    files, notes = collect_inputs(args.inputs, recursive=args.recursive, output=out_dir)
    for note in notes:
        _say(note)
    if not files:
        raise UserError("no input images found")
    check_jobs(args.jobs)
    # Settings check themselves: an impossible one fails here, before any model is loaded.
    spec = JobSpec(
        model=args.model, detector=args.detector, parser=args.parser,
        device="cpu" if ray_settings else resolve_device(args.device),  # on Ray: the workers', chosen once connected
        dtype=args.dtype, compile=args.compile, aligned=args.aligned, fidelity=args.fidelity,
        detect=DetectSettings(threshold=args.threshold, selection=args.select, top_k=args.top_k,
                              min_face_size=args.min_face, max_face_size=args.max_face,
                              working_size=args.working_size, min_eye_distance=args.min_eye_distance,
                              order=args.order, face_indices=args.face_indices),
        restore=RestoreSettings(noise=args.noise, seed=args.seed, chunk_size=args.chunk),
        video_smoothing=args.video_smoothing,
        paste=PasteSettings(mask="parsing" if args.parser else "feathered", color_correction=args.color_correction,
                            blend=args.blend),
        max_megapixels=args.max_megapixels, detect_batch=args.detect_batch,
    )
    if args.download:
        fetch_missing([args.model, args.detector, args.parser])
    todo, skipped = plan_targets(files, out_dir, args.overwrite)
    counts = dict.fromkeys(OUTCOMES, 0)
    for outcome in skipped:
        _say(f"skipped {outcome.path}: {outcome.message}")
        counts["skipped"] += 1
    if ray_settings:  # the workers load the models and write the outputs; Ray Data shows the progress
        from .ray_job import restore_on_ray

        outcomes, off_bar, progress = restore_on_ray(spec, todo, ray_settings), "", _Progress(len(todo), show=False)
    else:
        job = FolderJob(spec)
        for note in job.notes:
            _say(note)
        progress, off_bar = _Progress(len(todo)), "\n"  # a message leaves the bar's line
        outcomes = job.restore_files(todo, jobs=args.jobs, on_video_frames=progress.video)
    with closing(outcomes):  # closed on Ctrl-C: the workers stop
        for outcome in outcomes:
            if outcome.status == "failed" or outcome.status == "unreadable":
                what = outcome.status if outcome.status == "failed" else "skipped"
                _say(f"{what} {outcome.path}: {outcome.message}", lead=off_bar)
            elif outcome.message:
                _say(f"{outcome.path}: {outcome.message}", lead=off_bar)
            counts[outcome.status] += 1
            written = outcome.status in ("restored", "unchanged")
            progress.update(outcome.faces, ("video" if is_video(outcome.path) else "image") if written else None)
    summary = ", ".join(f"{count} {what}" for what, count in counts.items() if count)
    written = any(progress.kinds.values())
    print(printable(f"{out_dir}: {summary}" + (f" ({progress.summary()})" if written else "")))
    return 1 if counts["unreadable"] or counts["failed"] else 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from ..face_detectors import describe_detector
    from ..face_restorers import describe_file
    from ..model_files import ModelLoadError

    try:
        print(describe_file(args.file))
    except ModelLoadError:  # no face restorer: a detector file is described, anything else keeps this error
        detector = describe_detector(Path(args.file))
        if detector is None:
            raise
        print(detector)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from ..face_restorers import convert_to_safetensors

    if Path(args.output).exists() and not args.overwrite:
        raise UserError(f"{args.output} exists (use --overwrite)")
    print(f"wrote {convert_to_safetensors(args.input, args.output)}")
    return 0


def cmd_make_test_model(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    from ..gfpgan_arch.testing import seeded_clean_network

    from .folder_job import write_atomically

    output = Path(args.output)
    if output.is_dir():
        raise UserError(f"{output} is a folder; name the file to write (e.g. {output / 'seeded-test.safetensors'})")
    network = seeded_clean_network(seed=args.seed)
    tensors = {k: v.contiguous() for k, v in network.state_dict().items()}
    note = {"note": f"random weights, seed {args.seed}: a smoke-test stand-in, restores nothing"}
    try:  # under a temporary name, renamed into place: a full disk leaves no truncated model behind
        write_atomically(output, lambda partial: save_file(tensors, str(partial), metadata=note))
    except Exception as error:  # safetensors reports a full disk as its own SafetensorError, not an OSError
        if isinstance(error, OSError) and error.strerror:
            raise UserError(f"could not write {output}: {error.strerror}") from None
        raise UserError(f"could not write {output}: {_io_reason(error)}") from None
    print(f"wrote {output} (GFPGANv1Clean, official config, seeded random weights: for smoke tests only)")
    return 0


def _io_reason(error: Exception) -> str:
    """An I/O error's reason in words: the OS's (``No space left on device``), also out of safetensors' Rust text."""
    from ..face_pipeline.errors import one_line

    code = re.search(r"\(os error (\d+)\)|code: (\d+)", str(error))
    return os.strerror(int(code[1] or code[2])) if code else one_line(error)


def _fetch(url: str, partial: Path) -> str:
    """Stream ``url`` into ``partial``; its sha256."""
    import hashlib
    import urllib.request

    with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as handle:
        digest = hashlib.sha256()
        while block := response.read(1 << 20):
            digest.update(block)
            handle.write(block)
    return digest.hexdigest()


def download_release(file_name: str, target: Path) -> Path:
    """Fetch an official file into ``target`` from its URL (then its mirrors, if one cannot be reached),
    checking its sha256 where we know it (and warning where we do not)."""
    from ..model_files.releases import KNOWN_RELEASES, find_release

    release = find_release(file_name=file_name)
    if release is None:
        raise UserError(f"unknown release {file_name!r}; `comfyui-gfpgan download --list` shows the "
                        f"{len(KNOWN_RELEASES)} known files")
    if release.non_commercial:
        print(f"note: {release.file_name}: {release.licence}", file=sys.stderr)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".part")
    failures = []
    for url in (release.url, *release.mirrors):
        print(f"downloading {url} -> {target}", file=sys.stderr)
        try:
            sha256 = _fetch(url, partial)
            break
        except OSError as error:
            partial.unlink(missing_ok=True)
            failures.append(f"{url} ({error})")
    else:
        raise UserError(f"could not download {'; '.join(failures)}; fetch it by hand and put it at {target}")
    if release.sha256 and sha256 != release.sha256:
        partial.unlink(missing_ok=True)
        raise UserError(f"{url}: sha256 mismatch (got {sha256}, expected {release.sha256})")
    partial.replace(target)
    if not release.sha256:
        print(f"warning: not verified: no known sha256 for {file_name}; {target} is whatever {url} served",
              file=sys.stderr)
    return target


def fetch_missing(paths: list[str | None]) -> None:
    """``restore --download``: download each missing model file that is a known official release."""
    from ..model_files.releases import find_release

    for name in paths:
        if name and not Path(name).exists():
            if find_release(file_name=Path(name).name) is None:
                raise UserError(f"{name} does not exist and is no official file name that --download could fetch")
            download_release(Path(name).name, Path(name))


def release_table() -> str:
    """``download --list``: every known file, its family, crop size, licence and whether its hash is known."""
    from ..model_files.releases import KNOWN_RELEASES

    rows = [("file", "family", "crop", "sha256", "licence")]
    rows += [
        (r.file_name, r.arch, f"{r.crop_size} px" if r.crop_size else "-", "verified" if r.sha256 else "not verified",
         r.licence)
        for r in KNOWN_RELEASES
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4] for row in rows)


def cmd_download(args: argparse.Namespace) -> int:
    if args.list:
        print(release_table())
        return 0
    if not args.name:
        raise UserError("name a file to download (`comfyui-gfpgan download --list` shows them)")
    target = Path(args.dir) / args.name
    if target.exists() and not args.overwrite:
        raise UserError(f"{target} exists (use --overwrite)")
    print(f"wrote {download_release(args.name, target)}")
    return 0


def cmd_migrate_workflow(args: argparse.Namespace) -> int:
    from ..nodes.peer_workflows import migrate_file

    source, target = Path(args.input), Path(args.output)
    if target.exists() and not args.overwrite:
        raise UserError(f"{target} exists (use --overwrite)")
    changes = migrate_file(source, target)
    if not changes:
        print(f"{source}: no facerestore_cf, ReActor or lucak5s/comfyui_gfpgan node to move; nothing written")
        return 0
    for change in changes:
        print(change)
    print(f"wrote {target} ({len(changes)} node{'s' if len(changes) != 1 else ''} moved to this pack)")
    return 0


class _HelpFormatter(argparse.HelpFormatter):
    """Help that ends each option with its default, where it has one to say and its text does not say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if not action.option_strings or default is None or default is False or default in ("", argparse.SUPPRESS) \
                or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


def version() -> str:
    """This pack's version: its checkout's pyproject.toml, else the installed distribution's."""
    from importlib import metadata

    pyproject = Path(__file__).with_name("pyproject.toml")
    if pyproject.is_file() and (found := re.search(r'^version = "([^"]+)"', pyproject.read_text(), re.M)):
        return found[1]
    try:
        return metadata.version("comfyui-gfpgan")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    from ..face_pipeline.detect import FACE_ORDERS, GFPGANER_MIN_EYE_DISTANCE, SELECTION_MODES
    from .folder_job import MAX_JOBS, MAX_MEGAPIXELS, default_jobs
    from .ray_job import LOCAL as LOCAL_RAY  # ray_job imports Ray only when it runs

    parser = argparse.ArgumentParser(prog="comfyui-gfpgan", description="GFP-GAN blind face restoration",
                                     formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=summary, description=description, formatter_class=_HelpFormatter)

    restore = command(
        "restore", "restore the faces in images, videos or folders of them",
        "Restores the faces in image files (PNG, JPEG, WebP, BMP, TIFF, still GIF) and video files (.mp4, .m4v, "
        ".mov, .mkv, .avi, .webm; needs PyAV), named one by one or in folders, into an output folder; outputs keep "
        "their input's name and never replace an input. A file that cannot be read or restored is reported on "
        "one line and the rest go on (the exit status is then 1).")
    restore.add_argument("inputs", nargs="+", help="image or video files, or folders of them")
    needed = restore.add_argument_group("required", "-o and --model always; --detector unless --aligned")
    needed.add_argument("-o", "--output", required=True, help="output folder (files keep their input's name and, "
                        "with --recursive, their path inside the input folder); made at the first write")
    needed.add_argument("--model", required=True, help="GFPGAN weights (.safetensors or .pth)")
    needed.add_argument("--detector", help="face detector weights, the family told from the file: RetinaFace "
                        "(detection_Resnet50_Final.pth, detection_mobilenet0.25_Final.pth) or YOLOv5-face "
                        "(yolov5l-face.pth, yolov5n-face.pth); required unless --aligned")
    restore.add_argument("-r", "--recursive", action="store_true",
                         help="read input folders' subfolders too, mirroring them under the output folder (hidden "
                         "folders and the output folder itself are left out)")
    restore.add_argument("--parser", help="ParseNet weights (parsing_parsenet.pth) for a face-parsing blend mask")
    restore.add_argument("--fidelity", type=float,
                         help="0..1, higher = closer to the input: GFP-GAN's CS-SFT weight (default 1 = official), "
                         "CodeFormer's w (default 0.5, upstream's); ignored by families without the knob")
    restore.add_argument("--blend", type=float, default=1.0, help="image-space visibility of the restored face, 0..1")
    restore.add_argument("--noise", choices=("fixed", "seeded"), default="fixed",
                         help="the network's noise: fixed = the maps stored in the checkpoint (deterministic); "
                         "seeded = drawn per face from --seed (reproducible, varies with the seed)")
    restore.add_argument("--seed", type=int, default=0,
                         help="with --noise seeded: face i of an image (of a video: of the whole video) draws from "
                         "seed + i; 0..2**63-1")
    restore.add_argument("--threshold", type=float, default=None,
                         help="face detection confidence, in [0, 1) (default: the detector's: 0.97 for RetinaFace, "
                         "GFPGANer's; 0.7 for YOLOv5-face, its upstream code's)")
    restore.add_argument("--select", choices=SELECTION_MODES, default="all",
                         help="which faces of each image to restore: all, the largest, the one nearest the center, "
                         "or the --top-k most confident")
    restore.add_argument("--top-k", type=int, default=1, help="with --select top_k: how many faces")
    restore.add_argument("--min-face", type=int, default=0, help="ignore faces smaller than this (pixels)")
    restore.add_argument("--max-face", type=int, default=0, help="ignore faces larger than this (pixels; 0 = no limit)")
    restore.add_argument("--min-eye-distance", type=float, default=GFPGANER_MIN_EYE_DISTANCE,
                         help="ignore faces whose eyes are closer than this (pixels; GFPGANer's 5 by default)")
    restore.add_argument("--order", choices=FACE_ORDERS, default="score",
                         help="how each image's faces are ordered for --face-indices")
    restore.add_argument("--face-indices", default="",
                         help="keep only these positions in that order: 0 | 0,2 | 1-3 (default: all)")
    restore.add_argument("--working-size", type=int, default=0,
                         help="detection short side (0 = full size, as GFPGANer; smaller is faster but misses small faces)")
    restore.add_argument("--video-smoothing", type=float, default=0.5,
                         help="videos: how much each face's landmarks follow the previous frame's, in [0, 1) "
                         "(0 = none; steadier faces, less jitter); images are never smoothed")
    restore.add_argument("--color-correction", action="store_true",
                         help="match each restored face's colours to the original face's before pasting it back")
    restore.add_argument("--chunk", type=int, help="faces per network call, gathered across images (default: 8 on "
                         "CUDA, 1 on CPU)")
    restore.add_argument("--detect-batch", type=int,
                         help="loaded images of one size detected in one detector call (default: on CUDA as many as "
                         "--jobs loads at once; on the CPU 1, where batched calls measured slower per image and "
                         "round differently)")
    restore.add_argument("--jobs", type=int, default=default_jobs(),
                         help="threads that decode, paste back and encode images while the device restores "
                         f"(default: min(4, CPU cores) = {default_jobs()} here; at most {MAX_JOBS}, and never more "
                         "than the images or 4 per CPU core are started)")
    restore.add_argument("--max-megapixels", type=float, default=MAX_MEGAPIXELS,
                         help="larger images are refused from their header, never decoded (decompression bombs, "
                         "or more than memory holds)")
    restore.add_argument("--device", help="cpu, cuda, cuda:1, mps ... (default: cuda if available)")
    restore.add_argument("--dtype", choices=DTYPE_CHOICES, default="auto",
                         help="auto: bf16 on GPUs and CPUs with native bf16 (output PSNR vs fp32 ~60 dB), else fp32; "
                         "no fp16: GFPGAN's decoder overflows it")
    restore.add_argument("--compile", action="store_true",
                         help="torch.compile the network: ~10%% faster per face on CPU after a one-off compile of about "
                              "a minute (needs a C++ compiler; falls back to uncompiled with a warning)")
    restore.add_argument("--aligned", action="store_true",
                         help="inputs are already-aligned face crops (any size: each comes back in its own size, "
                         "gray or alpha)")
    restore.add_argument("--overwrite", action="store_true",
                         help="replace outputs that exist (without it they are skipped, so a stopped run resumes); "
                         "an input is never replaced, even with it")
    restore.add_argument("--download", action="store_true",
                         help="fetch missing official model files (e.g. --model models/GFPGANv1.4.pth) by URL, "
                         "sha256-checked where a hash is known (a warning says when it is not); never done without "
                         "this flag")
    restore.add_argument("--ray", nargs="?", const=LOCAL_RAY, metavar="ADDRESS",
                         help="run as a Ray Data job: on a new local Ray, or on the cluster at ADDRESS (auto, "
                         "HOST:6379); put it after the inputs (or write --ray=ADDRESS). Needs Ray Data: "
                         'pip install "ray[data]>=2.60" (in a checkout: pip install -e ".[ray]")')
    restore.add_argument("--workers", type=int,
                         help="with --ray: how many workers, each loading the models once (default: one per GPU "
                         "where the cluster has GPUs, else one per node)")
    restore.add_argument("--worker-cpus", type=float,
                         help="with --ray: CPUs each worker reserves and computes on (default: GPU workers 1; CPU "
                         "workers the most that fit --workers, e.g. the whole node for one per node)")
    restore.add_argument("--worker-gpus", type=float,
                         help="with --ray: GPUs each worker reserves (default: 1 where the cluster has GPUs and "
                         "--device is not cpu, else 0)")
    restore.set_defaults(run=cmd_restore)

    inspect = command("inspect", "say what a weights file is",
                      "Names a weights file's family, config, crop size and fidelity knob (a face detector's family, "
                      "variant and licence), and the official release it is, without running it.")
    inspect.add_argument("file", help="a .pth, .safetensors or .onnx file")
    inspect.set_defaults(run=cmd_inspect)

    convert = command("convert", "convert a .pth checkpoint to .safetensors",
                      "Writes a .pth checkpoint's weights as .safetensors (which loads without running pickled "
                      "code), under a temporary name renamed into place.")
    convert.add_argument("input", help="the .pth checkpoint")
    convert.add_argument("output", help="the .safetensors file to write")
    convert.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    convert.set_defaults(run=cmd_convert)

    make = command("make-test-model", "write a seeded random GFPGAN (smoke tests only)",
                   "Writes a GFPGANv1Clean with the official config and seeded random weights: it runs like a "
                   "real model but restores nothing (for smoke tests without downloading a checkpoint).")
    make.add_argument("output", help="the .safetensors file to write")
    make.add_argument("--seed", type=int, default=0, help="the weights' random seed")
    make.set_defaults(run=cmd_make_test_model)

    download = command("download", "explicitly download an official weights file, sha256-checked where a hash is "
                       "known (a warning says when it is not)",
                       "Downloads a known official weights file by its URL (then its mirrors), sha256-checked where "
                       "its hash is known; nothing is ever downloaded without this command or restore --download.")
    download.add_argument("name", nargs="?", help="file name, e.g. GFPGANv1.4.pth or codeformer-v0.1.0.pth")
    download.add_argument("--list", action="store_true",
                          help="list the known files: family, crop size, licence, whether the sha256 is known")
    download.add_argument("--dir", default="models", help="destination folder (in ComfyUI: models/facerestore_models "
                          "for face restorers, models/facedetection for detectors and parsers)")
    download.add_argument("--overwrite", action="store_true", help="replace the file if it exists")
    download.set_defaults(run=cmd_download)

    migrate = commands.add_parser(
        "migrate-workflow", help="move a workflow made with facerestore_cf, ReActor or lucak5s/comfyui_gfpgan onto "
        "this pack's nodes",
        description="Rewrites the face-restore nodes of facerestore_cf, ReActor and lucak5s/comfyui_gfpgan in a "
        "ComfyUI workflow (UI or API JSON, or a PNG holding them) to this pack's twins of them; links, widget "
        "values, titles and positions are kept. A workflow with a node this pack has no twin of (face swapping) is "
        "refused and nothing is written.")
    migrate.add_argument("input", help="workflow .json (UI or API format) or a .png saved by ComfyUI")
    migrate.add_argument("-o", "--output", required=True, help="where to write the migrated copy (never the input)")
    migrate.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    migrate.set_defaults(run=cmd_migrate_workflow)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..face_pipeline.detect import FaceModelError
    from .folder_job import JobError
    from ..model_files import ModelLoadError

    try:
        return args.run(args)
    except (UserError, JobError, ModelLoadError, FaceModelError, ValueError, OSError) as error:
        print(f"\nerror: {printable(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
