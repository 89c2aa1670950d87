"""The whole face restoration: detect -> align -> restore -> paste, over a batch of frames.

Used by the CLI and the all-in-one ComfyUI node. Frames travel to the device a
few at a time, so a long video batch never sits on the GPU at once; the frames
being pasted into stay on the CPU, only each face's window comes back from the
device.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterator, NamedTuple

import torch
from torch import nn

from .align import align_faces, as_rgb
from .detect import (
    GFPGANER_MIN_EYE_DISTANCE,
    FaceDetector,
    check_number,
    check_selection,
    check_smoothing,
    check_working_size,
    detect_faces,
    parse_face_indices,
    select_faces,
    smooth_landmarks,
)
from ..face_restorers import FaceRestorer, as_face_restorer
from .errors import FaceInputError
from .faces import FaceBatch, FaceRecord, offset_faces
from .paste import check_paste_options, paste_faces
from .restore import check_restore_options, restore_crops


@dataclass
class DetectSettings:
    """How faces are found and chosen. Checked here, once, for the CLI, the Python API and the nodes alike.

    The defaults are GFPGANer's detection: full resolution, confidence 0.97 (with RetinaFace; YOLOv5-face's
    default is its upstream code's 0.7), eyes at least 5 px apart.
    """

    threshold: float | None = None  # keep detections scoring above this, in [0, 1); None: the detector's default
    selection: str = "all"  # all | largest | center | top_k
    top_k: int = 1
    min_face_size: int = 0
    max_face_size: int = 0  # 0 = no limit
    working_size: int = 0  # detect with the short side at most this (>= MIN_WORKING_SIZE); 0 = full size (GFPGANer's)
    smoothing: float = 0.0  # temporal landmark smoothing across consecutive frames (0..1)
    min_eye_distance: float = GFPGANER_MIN_EYE_DISTANCE  # px; drops side and tiny faces as GFPGANer does
    order: str = "score"  # score | size | left_to_right | right_to_left | top_to_bottom | bottom_to_top
    face_indices: str | tuple[int, ...] = ""  # positions in that order, e.g. "0", "0,2", "1-3"; "" = all

    def __post_init__(self) -> None:
        if self.threshold is not None:
            check_number("detection threshold", self.threshold)
            if not 0 <= self.threshold < 1:
                raise FaceInputError(f"detection threshold must lie in [0, 1), got {self.threshold!r}")
        for name in ("min_face_size", "max_face_size", "working_size"):
            check_number(name, getattr(self, name), whole=True)
        check_working_size(self.working_size)
        check_selection(self.selection, self.top_k, self.min_face_size, self.max_face_size, self.min_eye_distance,
                        self.order)
        check_smoothing(self.smoothing)
        self.face_indices = parse_face_indices(self.face_indices)  # parsed once; select_faces gets the tuple


@dataclass
class RestoreSettings:
    fidelity: float = 1.0
    noise: str = "fixed"  # fixed | seeded
    seed: int = 0
    chunk_size: int | None = None  # faces per network call; None = best for the device
    dtype: torch.dtype | None = None  # compute dtype (float32 / bfloat16); None = the weights' dtype

    def __post_init__(self) -> None:
        check_restore_options(fidelity=self.fidelity, noise=self.noise, seed=self.seed, chunk_size=self.chunk_size,
                              dtype=self.dtype)


@dataclass
class PasteSettings:
    mask: str = "feathered"  # feathered | parsing
    feather: float = 1.0
    color_correction: bool = False
    blend: float = 1.0  # visibility of the restored faces: 0 = frames unchanged, 1 = fully restored

    def __post_init__(self) -> None:
        check_paste_options(mask=self.mask, feather=self.feather, blend=self.blend)


@dataclass
class PipelineResult:
    images: torch.Tensor  # [B,C,H',W'] 0..1, CPU
    masks: torch.Tensor  # [B,H',W'] union of the face blend masks
    faces: FaceBatch
    crops: torch.Tensor  # [N,3,S,S] aligned input crops, CPU ([0,3,S,S] unless keep_crops=True)
    restored: torch.Tensor  # [N,3,S,S] restored crops, CPU ([0,3,S,S] unless keep_crops=True)
    frames_with_faces: list[int] = field(default_factory=list)
    skipped_frames: list[int] = field(default_factory=list)  # frames with NaN / inf, passed through unchanged
    last_faces: list[FaceRecord] = field(default_factory=list)  # the last frame's: ``previous_faces`` of the next call
    # Indices into ``faces.faces`` of faces the restorer gave NaN / inf for: not pasted, their pixels stay the original.
    unrestored_faces: list[int] = field(default_factory=list)


def validate_images(images: torch.Tensor, name: str = "images") -> None:
    """Clear errors (``FaceInputError``) for batches the pipeline cannot process: layout, size and dtype.

    Values are checked a chunk at a time as the pipeline reaches them (``finite_frames``), so a
    long video needs no whole-batch copy for it.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise FaceInputError(f"expected {name} as a [B,C,H,W] tensor, got {getattr(images, 'shape', type(images))}")
    if images.shape[1] not in (1, 3, 4):
        raise FaceInputError(f"{name} must have 1 (gray), 3 (RGB) or 4 (RGBA) channels, got {images.shape[1]}")
    if images.numel() == 0:
        raise FaceInputError(f"empty {name} batch of shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise FaceInputError(f"{name} must be float in 0..1, got {images.dtype}")


def finite_frames(frames: torch.Tensor) -> torch.Tensor:
    """``[b]`` bool on ``frames``' device: which frames hold no NaN or inf (called per chunk: no whole-batch copy)."""
    return torch.isfinite(frames).flatten(1).all(dim=1)


def find_faces(
    rgb: torch.Tensor,
    detector: FaceDetector,
    settings: DetectSettings,
    crop_size: int = 512,
    previous: list[FaceRecord] | None = None,
) -> tuple[FaceBatch, torch.Tensor, list[FaceRecord]]:
    """Detect, select, smooth and align the faces of one chunk of ``[B,3,H,W]`` frames.

    Returns the aligned faces, their ``[N,3,S,S]`` crops, and the faces of the
    chunk's last frame, to pass as ``previous`` to the next chunk of the same
    video so landmark smoothing carries on across chunks.
    """
    faces = detect_faces(detector, rgb, threshold=settings.threshold, working_size=settings.working_size)
    faces = select_faces(faces, settings.selection, settings.top_k, settings.min_face_size, settings.max_face_size,
                         settings.min_eye_distance, settings.order, settings.face_indices)
    if settings.smoothing > 0:
        faces = smooth_landmarks(faces, settings.smoothing, previous=previous)
    faces, crops = align_faces(rgb, faces, crop_size)
    last_frame = [faces.faces[i] for i in faces.faces_in_image(len(faces.image_sizes) - 1)]
    return faces, crops, last_frame


class _FrameChunk(NamedTuple):
    start: int  # batch index of the chunk's first frame
    frames: torch.Tensor  # [b,C,H,W] float32 on the device
    faces: FaceBatch  # the chunk's aligned faces, image_index within the chunk
    crops: torch.Tensor  # [N,3,S,S] their crops, on the device
    skipped: list[int]  # batch indices of frames with NaN or inf (in images or targets): no faces taken there
    last_faces: list[FaceRecord]  # the faces of its last frame, which the next frame's smoothing follows

    def batch_faces(self) -> list[FaceRecord]:
        """The chunk's faces with ``image_index`` into the whole batch."""
        return offset_faces(self.faces.faces, self.start)


def _frame_chunks(
    images: torch.Tensor,
    detector: FaceDetector,
    settings: DetectSettings,
    crop_size: int,
    frames_per_chunk: int,
    device: torch.device,
    targets: torch.Tensor | None = None,
    previous: list[FaceRecord] | None = None,
) -> Iterator[_FrameChunk]:
    """``find_faces`` over ``images`` ``frames_per_chunk`` frames at a time, each chunk moved to ``device``;
    landmark smoothing carries on from one chunk to the next, and from ``previous`` (the faces of the frame
    before ``images``, where they continue a video).

    A frame with NaN or inf (in ``images`` or ``targets``) is one bad item of the batch, not a reason
    to stop it: no face is taken from it, so it passes through unchanged, and a warning names it.
    """
    if frames_per_chunk < 1:
        raise FaceInputError(f"frames_per_chunk must be at least 1, got {frames_per_chunk}")
    previous = list(previous or [])  # the previous chunk's last frame
    for start in range(0, images.shape[0], frames_per_chunk):
        frames = images[start : start + frames_per_chunk].to(device, torch.float32)
        usable = finite_frames(frames)
        if targets is not None:
            usable &= finite_frames(targets[start : start + frames_per_chunk]).to(usable.device)
        rgb, skipped = as_rgb(frames), []
        if not bool(usable.all()):
            skipped = [start + int(i) for i in (~usable).nonzero().flatten()]
            warnings.warn(f"frames {skipped} contain NaN or infinite values: passed through unchanged")
            rgb = rgb.masked_fill(~usable.view(-1, 1, 1, 1), 0.0)  # a new tensor: the caller's frames stay as they are
        faces, crops, previous = find_faces(rgb, detector, settings, crop_size, previous)
        if skipped:
            keep = [i for i, face in enumerate(faces.faces) if usable[face.image_index]]
            faces = FaceBatch([faces.faces[i] for i in keep], faces.image_sizes, faces.crop_size)
            crops, previous = crops[keep], previous if bool(usable[-1]) else []
        yield _FrameChunk(start, frames, faces, crops, skipped, previous)


def _paste_chunk(
    chunk: _FrameChunk, restored: torch.Tensor, parser, paste: PasteSettings, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Parse (for ``mask="parsing"``) and paste a chunk's ``restored`` crops into ``targets``, its frames on the
    CPU (same-size targets map 1:1): the device holds only the face windows. New frames and their masks."""
    parse_masks = None
    if paste.mask == "parsing" and len(chunk.faces):
        from .parse import parse_face_masks

        parse_masks = parse_face_masks(parser, restored)
    return paste_faces(
        chunk.frames, chunk.faces, restored, mask=paste.mask, parse_masks=parse_masks, feather=paste.feather,
        color_correction=paste.color_correction, blend=paste.blend, targets=targets,
    )


def find_faces_in_frames(
    images: torch.Tensor,
    detector: FaceDetector,
    settings: DetectSettings,
    crop_size: int = 512,
    frames_per_chunk: int = 16,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[FaceBatch, torch.Tensor]:
    """``find_faces`` over a whole batch (``[B,C,H,W]``, any device), ``frames_per_chunk`` frames on the
    detector's device at a time; crops come back on the CPU."""
    validate_images(images)
    total = images.shape[0]
    found, crops = [], []
    for chunk in _frame_chunks(images, detector, settings, crop_size, frames_per_chunk, detector.device):
        found += chunk.batch_faces()
        crops.append(chunk.crops.cpu())
        if on_progress is not None:
            on_progress(chunk.start + chunk.frames.shape[0], total)
    return FaceBatch(found, [tuple(images.shape[-2:])] * total, crop_size), torch.cat(crops)


def restore_faces_in_images(
    images: torch.Tensor,
    restorer: FaceRestorer | nn.Module,
    detector: FaceDetector,
    parser=None,
    *,
    detect: DetectSettings = DetectSettings(),
    restore: RestoreSettings = RestoreSettings(),
    paste: PasteSettings = PasteSettings(),
    targets: torch.Tensor | None = None,
    frames_per_chunk: int = 16,
    keep_crops: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    previous_faces: list[FaceRecord] | None = None,
) -> PipelineResult:
    """Find, restore and paste back every face in ``images`` (``[B,C,H,W]`` 0..1, C = 1, 3 or 4).

    ``targets`` (same batch and channels, any size) receive the faces instead of
    ``images``, e.g. an upscaled copy. Frames without faces come back unchanged
    (bit-exact). ``frames_per_chunk`` frames are on the device at a time.
    ``keep_crops=True`` also returns the input and restored crops: they cost ~6 MB
    per 512 face, which adds up over a long video, so by default they are left out.
    A frame holding NaN or inf (in ``images`` or ``targets``) passes through unchanged, with a
    warning, and is listed in ``skipped_frames``; the rest of the batch is restored. A face the restorer gives
    NaN or inf for is left as it was (not pasted), with a warning, and listed in ``unrestored_faces``.
    ``on_progress(done_frames, total_frames)`` is called after each frame chunk and
    after each network chunk (``done`` may repeat); it may raise to cancel.
    Results are on the CPU. A video restored a batch of frames at a time passes each result's
    ``last_faces`` as the next call's ``previous_faces``, so landmark smoothing carries on across calls.
    """
    validate_images(images)
    if targets is not None:
        validate_images(targets, "targets")
        if targets.shape[:2] != images.shape[:2]:
            raise FaceInputError(f"targets {tuple(targets.shape)} do not match images {tuple(images.shape)} in batch or channels")
    if paste.mask == "parsing" and parser is None:
        raise FaceInputError("mask='parsing' needs a face parser model")
    restorer = as_face_restorer(restorer)
    device, crop_size = restorer.device, restorer.crop_size
    total = images.shape[0]
    source = images if targets is None else targets  # the frames that receive the faces
    # In the frames' own memory layout: ComfyUI's [B,H,W,C] batch viewed as [B,C,H,W] gets an output
    # that is [B,H,W,C] in memory, so handing it back to ComfyUI needs no second whole-batch copy.
    out_images = torch.empty_like(source, device="cpu")
    out_masks = torch.zeros(total, *source.shape[-2:])
    all_faces, all_crops, all_restored = [], [], []
    skipped: list[int] = []
    unrestored: list[int] = []
    last_faces = list(previous_faces or [])
    for chunk in _frame_chunks(images, detector, detect, crop_size, frames_per_chunk, device, targets,
                               previous_faces):
        last_faces = chunk.last_faces
        start, end, faces = chunk.start, chunk.start + chunk.frames.shape[0], chunk.faces
        chunk_targets = source[start:end].to("cpu", torch.float32)
        skipped += chunk.skipped
        failed: list[int] = []
        restored = restore_crops(
            restorer, chunk.crops, fidelity=restore.fidelity, noise=restore.noise,
            seed=restore.seed + len(all_faces), chunk_size=restore.chunk_size, dtype=restore.dtype,
            on_chunk=None if on_progress is None else (lambda _done, _faces, start=start: on_progress(start, total)),
            on_not_finite=failed.extend,
        )
        unrestored += [len(all_faces) + i for i in failed]
        pasted_chunk, pasted_restored = chunk, restored
        if failed:  # a face the network gave NaN / inf for is not pasted: its pixels stay the original ones
            keep = [i for i in range(len(faces)) if i not in failed]
            pasted_chunk = chunk._replace(faces=FaceBatch([faces.faces[i] for i in keep], faces.image_sizes,
                                                          faces.crop_size), crops=chunk.crops[keep])
            pasted_restored = restored[keep]
        pasted, masks = _paste_chunk(pasted_chunk, pasted_restored, parser, paste, chunk_targets)
        out_images[start:end] = source[start:end]  # frames without faces pass through bit-exact
        for offset in sorted({face.image_index for face in pasted_chunk.faces.faces}):
            out_images[start + offset] = pasted[offset]
        out_masks[start:end] = masks
        all_faces += chunk.batch_faces()
        if keep_crops:
            all_crops.append(chunk.crops.cpu())
            all_restored.append(restored.cpu())
        if on_progress is not None:
            on_progress(end, total)

    faces = FaceBatch(all_faces, [tuple(images.shape[-2:])] * total, crop_size)
    no_crops = torch.zeros(0, 3, crop_size, crop_size)
    return PipelineResult(
        images=out_images,
        masks=out_masks,
        faces=faces,
        crops=torch.cat(all_crops) if all_crops else no_crops,
        restored=torch.cat(all_restored) if all_restored else no_crops,
        frames_with_faces=sorted({f.image_index for f in all_faces}),
        skipped_frames=skipped,
        last_faces=last_faces,
        unrestored_faces=unrestored,
    )
