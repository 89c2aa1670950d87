"""Restore image files into an output folder: the job ``comfyui-gfpgan restore`` runs (and each Ray worker).

``JobSpec`` says what to load and how to restore (plain data: it can be shipped to another process);
``FolderJob`` loads the models once and streams files through the pipeline (``face_pipeline.stream``:
decoding and writing in worker threads, the faces of several images batched for the network), one
``FileOutcome`` per input. Which files to restore, and where each one goes, is decided up front by
``plan_targets``. Outputs are written under a temporary name and renamed into place, so an interrupted
run leaves no truncated file that the next run would skip.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..face_pipeline.errors import FaceInputError, one_line
from ..face_pipeline.pipeline import DetectSettings, PasteSettings, RestoreSettings
from ..face_pipeline.stream import check_detect_batch
from .video_file import VIDEO_SUFFIXES, is_video, output_name

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
INPUT_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES
OUTCOMES = ("restored", "unchanged", "skipped", "unreadable", "failed")  # the summary's order
MAX_MEGAPIXELS = 100.0  # default --max-megapixels: larger images are refused from their header, never decoded
MAX_JOBS = 256  # --jobs above this is refused: each job is two threads, and thousands exhaust the process
JOBS_PER_CORE = 4  # I/O threads per CPU core at most: more only wait on the same cores


def default_jobs() -> int:
    """I/O worker threads (decoding, paste-back and encoding) when ``--jobs`` is not given."""
    return min(4, os.cpu_count() or 1)


def io_threads(jobs: int, files: int) -> int:
    """The I/O threads a stream of ``files`` images starts for ``--jobs`` ``jobs``: no more than there are files
    to read, nor than ``JOBS_PER_CORE`` per CPU core (at least 1)."""
    return max(1, min(jobs, files, JOBS_PER_CORE * (os.cpu_count() or 1)))


class JobError(Exception):
    """An error about one input file (or the whole job's settings), printed as one line."""


class UnreadableImage(FaceInputError):
    """A file not decoded as an image (not one, refused from its header, or unreadable): why, in one line."""


@dataclass(frozen=True)
class JobSpec:
    """Model files and settings for a restore job; the settings check themselves when made."""

    model: str
    detector: str | None  # None only with aligned=True
    parser: str | None = None
    device: str = "cpu"
    dtype: str = "auto"  # auto | fp32 | bf16
    compile: bool = False
    aligned: bool = False  # inputs are already-aligned face crops
    fidelity: float | None = None  # None: the family's default
    detect: DetectSettings = field(default_factory=DetectSettings)
    restore: RestoreSettings = field(default_factory=RestoreSettings)
    paste: PasteSettings = field(default_factory=PasteSettings)
    video_smoothing: float = 0.5  # landmark smoothing across a video's frames (images are never smoothed)
    max_megapixels: float = MAX_MEGAPIXELS  # larger images are refused from their header, before decoding
    detect_batch: int | None = None  # loaded images per detector call; None: face_pipeline.stream's default

    def __post_init__(self) -> None:
        if not self.max_megapixels > 0:
            raise JobError(f"--max-megapixels must be above 0, got {self.max_megapixels!r}")
        check_detect_batch(self.detect_batch)
        if not self.aligned and not self.detector:
            raise JobError("--detector is required (or use --aligned for pre-aligned face crops)")
        dataclasses.replace(self.detect, smoothing=self.video_smoothing)  # DetectSettings checks its range
        if self.fidelity is not None:
            dataclasses.replace(self.restore, fidelity=self.fidelity)  # RestoreSettings checks its range


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one input: ``status`` is one of ``OUTCOMES``; ``message`` says why where it is not plain."""

    path: Path
    status: str
    message: str = ""
    faces: int = 0


def collect_inputs(inputs: Iterable[str], recursive: bool = False,
                   output: Path | None = None) -> tuple[list[tuple[Path, Path]], list[str]]:
    """The image files named by ``inputs``, each with its path under the output folder: a file by its name, a
    folder's images by their path inside it, one level deep or, with ``recursive``, its whole tree (hidden
    folders and the ``output`` folder left out); sorted. And a note for each name that is neither, and for
    each folder whose subfolders are not read."""
    files, notes = [], []
    output = output.resolve() if output is not None else None
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images, unread = _folder_images(path, recursive, output)
            files += [(image, image.relative_to(path)) for image in images]
            if unread:
                notes.append(f"note: {path}: {unread} subfolder{'s' * (unread > 1)} not read (use --recursive)")
        elif path.is_file():
            files.append((path, Path(path.name)))
        else:
            notes.append(f"skipped {path}: no such file or folder")
    return files, notes


def _folder_images(folder: Path, recursive: bool, output: Path | None) -> tuple[list[Path], int]:
    """The images in ``folder`` (its tree with ``recursive``) and, without it, how many subfolders it has."""
    images = []
    for root, subfolders, names in os.walk(folder):  # symlinked folders are not followed: no loops
        root = Path(root)
        subfolders[:] = sorted(name for name in subfolders
                               if not name.startswith(".") and (root / name).resolve() != output)
        images += sorted(root / name for name in names
                         if Path(name).suffix.lower() in INPUT_SUFFIXES and (root / name).is_file())
        if not recursive:
            return images, len(subfolders)
    return images, 0


def plan_targets(files: Iterable[tuple[Path, Path]], out_dir: Path,
                 overwrite: bool) -> tuple[list[tuple[Path, Path]], list[FileOutcome]]:
    """``(input, output)`` pairs to restore, from ``(input, path under out_dir)`` pairs, and the inputs skipped:
    an output that is an input file (never written, even with ``overwrite``: restoring never replaces a photo),
    that exists (unless ``overwrite``: so an interrupted run resumes where it stopped) or that an earlier input
    already claims."""
    files = list(files)
    inputs = {path.resolve() for path, _ in files}
    todo, skipped, claimed = [], [], set()
    for path, name in files:
        target = out_dir / output_name(name)
        if target.resolve() in inputs:
            skipped.append(_would_replace_an_input(path, target))
        elif target in claimed:
            skipped.append(FileOutcome(path, "skipped", f"an earlier input already wrote {target}"))
        elif target.exists() and not overwrite:
            skipped.append(FileOutcome(path, "skipped", f"{target} exists (use --overwrite)"))
        else:
            claimed.add(target)
            todo.append((path, target))
    return todo, skipped


def _would_replace_an_input(path: Path, target: Path) -> FileOutcome:
    where = "itself" if target.resolve() == path.resolve() else f"the input {target}"
    return FileOutcome(path, "skipped", f"its output would replace {where}; inputs are never written over "
                       "(choose another -o)")


def read_image(path: Path, max_megapixels: float = MAX_MEGAPIXELS):
    """``(HxWxC float32 in 0..1, bit depth)``: RGB(A) or HxWx1 gray, turned upright by its EXIF orientation (JPEG,
    PNG, WebP; a TIFF's own orientation tag), as viewers show it; the output is written without EXIF.

    The header is read first (``_header``): an image over ``max_megapixels`` (a decompression bomb, or more
    than memory holds) or with several frames (an animation) is refused before a pixel is decoded. Every
    failure is an ``UnreadableImage`` (``MemoryError`` where decoding runs out of memory), in one line.
    """
    import cv2
    import numpy as np

    _quiet_decoders()
    orientation = _header(path, max_megapixels)
    # (OpenCV turns JPEGs by their EXIF itself unless told not to: here every format is turned below, once)
    jpeg = path.suffix.lower() in (".jpg", ".jpeg")
    flags = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR | cv2.IMREAD_IGNORE_ORIENTATION if jpeg else cv2.IMREAD_UNCHANGED
    try:
        data = cv2.imread(str(path), flags)
    except cv2.error as error:
        if "Insufficient memory" in str(error) or "Failed to allocate" in str(error):
            raise MemoryError("out of memory decoding it") from None
        raise UnreadableImage(f"not a readable image ({_cv2_reason(error)})") from None
    if data is None or data.size == 0:
        raise UnreadableImage("not a readable image")
    if data.dtype not in (np.uint8, np.uint16):  # 32-bit float TIFFs, for one: their range is not 0..1
        raise UnreadableImage(f"{data.dtype} samples: only 8- and 16-bit images are restored")
    if data.shape[0] * data.shape[1] > max_megapixels * 1e6:  # a TIFF whose directory did not parse
        raise UnreadableImage(_too_large(data.shape[1], data.shape[0], max_megapixels))
    depth = 16 if data.dtype == np.uint16 else 8
    data = data.astype(np.float32) / (2**depth - 1)
    if data.ndim == 2:
        data = data[:, :, None]
    elif data.shape[2] == 3:
        data = data[:, :, ::-1]
    elif data.shape[2] == 4:
        data = data[:, :, [2, 1, 0, 3]]
    else:
        raise UnreadableImage(f"{data.shape[2]} channels: only gray, RGB and RGBA images are restored")
    return np.ascontiguousarray(_upright(data, orientation)), depth


@functools.cache
def _quiet_decoders() -> None:
    """Our own header check replaces OpenCV's and Pillow's: their raw log lines and warnings are silenced, since
    each failure becomes its file's one-line message instead. (libpng's and libjpeg's own lines about damaged
    pixel data, written to stderr by C code, cannot be silenced from here.)"""
    import warnings

    import cv2
    from PIL import Image

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    warnings.filterwarnings("ignore", module=r"PIL\.")  # damaged EXIF or TIFF tags: the file's message says it


def _header(path: Path, max_megapixels: float) -> int:
    """The EXIF orientation (1..8) from the file's header, read by Pillow, which decodes no pixels to open a file;
    an ``UnreadableImage`` where the header says the image is too large or animated, or the file cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > max_megapixels * 1e6:
                raise UnreadableImage(_too_large(width, height, max_megapixels))
            # an animation (GIF, APNG, WebP) is refused, not flattened to its first frame; a TIFF's further pages
            # are often thumbnails, so a TIFF gives its first page
            if image.format != "TIFF" and getattr(image, "is_animated", False):
                raise UnreadableImage(f"an animated image ({image.n_frames} frames): only still images are "
                                      "restored (a video file of it is restored frame by frame)")
            # (OpenCV's TIFF reader turns the image itself; Pillow reads a PNG's EXIF before its pixels only where
            # it comes first, else it would decode them)
            if image.format == "TIFF" or image.format == "PNG" and "exif" not in image.info:
                return 1
            return int(image.getexif().get(_ORIENTATION, 1) or 1)
    except UnreadableImage:
        raise
    except Image.DecompressionBombError as error:  # Pillow's own limit (twice 89 MP): only above ours
        pixels = re.search(r"\((\d+) pixels\)", str(error))
        raise UnreadableImage(f"{int(pixels[1]) / 1e6 if pixels else 179:.0f} megapixels, over the "
                              f"{max_megapixels:g} megapixel limit: not decoded (--max-megapixels)") from None
    except UnidentifiedImageError:  # a float TIFF, for one; other files Pillow cannot identify are not decoded
        if _tiff_header(path, max_megapixels) is None:
            raise UnreadableImage("not a readable image") from None
        return 1  # (OpenCV's TIFF reader applies the orientation itself)
    except Exception as error:  # a damaged header fails in many ways (OSError, EOFError, struct.error ...)
        raise UnreadableImage(f"could not read it: {getattr(error, 'strerror', None) or one_line(error)}") from None


_ORIENTATION = 0x0112  # the EXIF tag


def _tiff_header(path: Path, max_megapixels: float) -> bool | None:
    """For a TIFF that Pillow cannot open (float or odd layouts): its size checked from its first directory, True;
    None where it is no TIFF."""
    from PIL import TiffImagePlugin

    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
            if head[:4] not in TiffImagePlugin.PREFIXES:
                return None
            directory = TiffImagePlugin.ImageFileDirectory_v2(head if head[2] == 43 else head[:8])  # 43: BigTIFF
            handle.seek(directory.next)
            directory.load(handle)
        width, height = int(directory.get(256, 0)), int(directory.get(257, 0))  # ImageWidth, ImageLength
    except Exception:  # a directory we cannot parse: OpenCV's reader (and its own pixel limit) says what it is
        return True
    if width * height > max_megapixels * 1e6:
        raise UnreadableImage(_too_large(width, height, max_megapixels))
    return True


def _too_large(width: int, height: int, max_megapixels: float) -> str:
    return (f"{width}x{height} ({width * height / 1e6:.0f} megapixels), over the {max_megapixels:g} megapixel "
            "limit: not decoded (--max-megapixels)")


def _cv2_reason(error: Exception) -> str:
    """OpenCV's error without its source location: ``(-215:Assertion failed) x in function 'f'`` -> ``x``."""
    text = one_line(error)
    match = re.search(r"\) (.*?) in function", text)
    return match[1] if match else text


def _upright(data, orientation: int):
    """``data`` (HxWxC) as EXIF ``orientation`` says to show it (1 as stored, 6 turned 90 degrees clockwise...)."""
    import numpy as np

    turns = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
             5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1),
             7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1], 8: lambda a: np.rot90(a, 1)}
    return turns.get(orientation, turns[1])(data)


def write_image(path: Path, image, depth: int = 8) -> None:
    """Write HxWxC RGB(A)/gray in 0..1 at 8 or 16 bits (16 only where the format has it), in the format its
    suffix names, atomically (see ``write_atomically``)."""
    import cv2
    import numpy as np

    if depth == 16 and path.suffix.lower() in (".png", ".tif", ".tiff"):
        data = (image.clip(0, 1) * 65535).round().astype(np.uint16)
    else:
        data = (image.clip(0, 1) * 255).round().astype(np.uint8)
    if data.shape[2] == 3:
        data = data[:, :, ::-1]
    elif data.shape[2] == 4:
        data = data[:, :, [2, 1, 0, 3]]
    try:
        encoded, buffer = cv2.imencode(path.suffix, np.ascontiguousarray(data))
    except cv2.error:
        encoded = False
    if not encoded:
        raise JobError(f"could not write {path}: no {path.suffix or 'suffix'} encoder for a {data.shape[2]}-channel "
                       f"{data.dtype} image")
    write_atomically(path, lambda partial: partial.write_bytes(buffer))


def write_atomically(target: Path, write: Callable[[Path], object]) -> None:
    """``write(partial)`` into a temporary name beside ``target``, then rename it into place: whatever stops the
    run (an error, Ctrl-C), ``target`` is either absent or complete, never truncated."""
    partial = target.with_name(f".{target.name}.partial")  # (not an image suffix: never taken as an input)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)  # a subfolder of a --recursive run
        write(partial)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _could_not_write(path: Path, target: Path, error: OSError) -> FileOutcome:
    # the target, not the temporary file that the error's own message would name
    return FileOutcome(path, "failed", f"could not write {target}: {error.strerror or one_line(error)}")


def cpu_has_native_bf16() -> bool:
    """avx512_bf16 or AMX: bf16 then runs GFPGAN about twice as fast as fp32 (elsewhere it is emulated)."""
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's, private: absent means no
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def job_dtype(name: str, device: str):
    """The compute dtype for ``--dtype`` on ``device`` (``auto``: bf16 where the device runs it natively)."""
    import torch

    from ..face_restorers import compute_dtype

    native_bf16 = cpu_has_native_bf16() if device == "cpu" else device.startswith("cuda") and torch.cuda.is_bf16_supported()
    return compute_dtype(name, native_bf16)


def check_jobs(jobs: int) -> int:
    """``jobs`` if it is a usable number of I/O threads, else a ``JobError`` (the CLI checks before loading)."""
    if not isinstance(jobs, int) or not 1 <= jobs <= MAX_JOBS:
        raise JobError(f"--jobs must be a whole number in 1..{MAX_JOBS}, got {jobs!r} (the default, "
                       f"{default_jobs()} here, keeps the device busy; more than {JOBS_PER_CORE} per CPU core "
                       "are not started)")
    return jobs


class FolderJob:
    """The models of a ``JobSpec``, loaded once, and the restoring of files with them."""

    def __init__(self, spec: JobSpec):
        from ..face_pipeline.detect import load_detector
        from ..face_restorers import load_face_restorer

        self.spec = spec
        self.restorer = load_face_restorer(spec.model, device=spec.device, dtype=job_dtype(spec.dtype, spec.device))
        fidelity = self.restorer.family.default_fidelity if spec.fidelity is None else spec.fidelity
        self.restore = dataclasses.replace(spec.restore, fidelity=fidelity)
        self.notes = [] if spec.fidelity is None or self.restorer.has_fidelity else [
            f"note: {self.restorer.family.no_fidelity_note}; --fidelity is ignored"]
        if spec.compile:
            self.restorer = self.restorer.compiled()
        self.detector = None if spec.aligned else load_detector(spec.detector, device=spec.device)
        self.parser = None
        if spec.parser:
            from ..face_pipeline.parse import load_parser

            self.parser = load_parser(spec.parser, device=spec.device)

    def restore_files(self, pairs: Iterable[tuple[Path, Path]], *, jobs: int | None = None,
                      on_video_frames: Callable[[Path, int], None] | None = None) -> Iterator[FileOutcome]:
        """Restore each ``(input, output)`` pair; one outcome per pair, in the order they complete (not the
        order given). ``jobs`` threads (default ``default_jobs()``) decode, paste back and encode while the
        device detects and restores; the faces of several images share each network call, each restored
        as if its image were alone. A failure of one file is its outcome, never an exception; closing the
        iterator (or an interrupt) stops the work, and files not yet written are left absent. Videos come
        after the images, one at a time; ``on_video_frames(video, frames_done)`` follows each one."""
        from ..face_pipeline.stream import restore_stream

        jobs = default_jobs() if jobs is None else check_jobs(jobs)
        spec, pairs, refused = self.spec, list(pairs), []
        inputs = {source.resolve() for source, _ in pairs}
        for pair in pairs:  # (plan_targets refuses these too: here for callers that pair files themselves)
            if pair[1].resolve() in inputs:
                refused.append(_would_replace_an_input(*pair))
        pairs = [pair for pair in pairs if pair[1].resolve() not in inputs]
        images = [pair for pair in pairs if not is_video(pair[0])]
        load = functools.partial(_load_file, max_megapixels=spec.max_megapixels)
        stream = restore_stream(images, load, _save_file, self.restorer, self.detector, self.parser,
                                detect=spec.detect, restore=self.restore, paste=spec.paste, aligned=spec.aligned,
                                workers=io_threads(jobs, len(images)), detect_batch=spec.detect_batch
                                ) if images else iter(())
        return self._then_videos(stream, [pair for pair in pairs if is_video(pair[0])], on_video_frames, refused)

    def _then_videos(self, images: Iterator[FileOutcome], videos: list[tuple[Path, Path]],
                     on_frames: Callable[[Path, int], None] | None,
                     refused: list[FileOutcome]) -> Iterator[FileOutcome]:
        yield from refused
        yield from images
        for source, target in videos:
            yield self.restore_video(source, target, on_frames)

    def restore_video(self, source: Path, target: Path,
                      on_frames: Callable[[Path, int], None] | None = None) -> FileOutcome:
        """Restore one video file into ``target`` (``video_file``): its frames a chunk at a time, landmarks
        smoothed across them, ``on_frames(source, frames_done)`` after each chunk; a video without faces is
        copied as it is."""
        import torch

        from ..face_pipeline.pipeline import restore_faces_in_images
        from ..face_pipeline.stream import item_error
        from .video_file import VideoError, restore_video

        if self.spec.aligned:
            return FileOutcome(source, "failed", "--aligned takes face crops, not videos")
        detect = dataclasses.replace(self.spec.detect, smoothing=self.spec.video_smoothing)
        state = {"previous": [], "faces": 0}  # the last frame's faces (smoothing) and the faces so far (seeds)

        def restore_frames(pixels):
            frames = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(255)
            result = restore_faces_in_images(
                frames, self.restorer, self.detector, self.parser, detect=detect, paste=self.spec.paste,
                restore=dataclasses.replace(self.restore, seed=self.restore.seed + state["faces"]),
                frames_per_chunk=len(frames), previous_faces=state["previous"])
            state["previous"], state["faces"] = result.last_faces, state["faces"] + len(result.faces)
            restored = result.images.mul(255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
            return restored, len(result.frames_with_faces), len(result.faces)

        outcome, same_container = None, target.suffix.lower() == source.suffix.lower()
        progress = None if on_frames is None else (lambda done: on_frames(source, done))

        def write(partial: Path) -> None:
            nonlocal outcome
            outcome = restore_video(source, partial, target.suffix, restore_frames, on_frames=progress)
            if not outcome.faces and same_container:
                shutil.copyfile(source, partial)  # nothing to restore: the original, not a re-encoded copy

        try:
            write_atomically(target, write)
        except VideoError as error:
            return FileOutcome(source, "unreadable" if error.unreadable else "failed", one_line(error))
        except OSError as error:
            return _could_not_write(source, target, error)
        except Exception as error:  # as for images: bad frames, or too big for the device, fail this video alone
            return FileOutcome(source, "failed", one_line(item_error(error)))
        if not outcome.faces:
            return FileOutcome(source, "unchanged", f"no face found in {outcome.frames} frames, "
                               + ("written unchanged" if same_container else f"re-encoded as {target.name}"))
        return FileOutcome(source, "restored", f"{outcome.frames} frames, faces in {outcome.frames_with_faces}",
                           faces=outcome.faces)


def _load_file(pair: tuple[Path, Path], max_megapixels: float = MAX_MEGAPIXELS):
    """The stream's loader: the input as a ``[1,C,H,W]`` frame with its bit depth (an ``UnreadableImage`` if it
    is not read, which the stream hands to ``_save_file``)."""
    import torch

    from ..face_pipeline.stream import Frame

    image, depth = read_image(pair[0], max_megapixels=max_megapixels)
    return Frame(torch.from_numpy(image).permute(2, 0, 1)[None], meta=depth)


def _save_file(result) -> FileOutcome:
    """The stream's saver: write one ``StreamResult`` to its output and say what happened."""
    path, target = result.source
    if isinstance(result.error, UnreadableImage):
        return FileOutcome(path, "unreadable", one_line(result.error))
    if result.error is not None:
        return FileOutcome(path, "failed", one_line(result.error))
    try:
        if result.image is None:
            write_atomically(target, lambda partial: shutil.copyfile(path, partial))
            return FileOutcome(path, "unchanged", "no face found, written unchanged")
        write_image(target, result.image[0].permute(1, 2, 0).numpy(), result.frame.meta)
    except JobError as error:
        return FileOutcome(path, "failed", one_line(error))
    except OSError as error:
        return _could_not_write(path, target, error)
    return FileOutcome(path, "restored", faces=result.faces)
