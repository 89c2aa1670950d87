"""The detect stage: any ``FaceDetector`` on a batch of frames, at a working size, then selection and smoothing.

The detector (``face_detectors``: RetinaFace or YOLOv5-face, told apart by the file's keys) finds boxes,
scores and five landmarks in the working image; this stage shrinks frames to that size, splits big
batches into passes, maps the results back to full-size pixels and turns them into ``FaceRecord`` s.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from numbers import Real

import torch
import torch.nn.functional as F

from ..face_detectors import FaceDetector, FaceModelError, load_detector, read_weights
from .errors import FaceInputError
from .faces import FaceBatch, FaceRecord, Landmarks, offset_faces

__all__ = ["FaceDetector", "FaceModelError", "detect_faces", "load_detector", "read_weights", "select_faces",
           "smooth_landmarks"]

# The smallest anchor a detector matches faces to is about 16 px: a frame whose short side is below
# that holds no face it can find, so such frames are faceless rather than errors.
MIN_FRAME_SIDE = 16
# The smallest working size (short side, px) worth detecting at. A face must span the smallest anchor, 16 px, and
# the network needs some context: face close-ups (the face a half of the frame) were found at the default threshold
# from 48-64 px, never at 32 px or below. Below 64 px only a face filling the frame could be found, so smaller
# working sizes, which would miss every face of a photo, are refused.
MIN_WORKING_SIZE = 64
_PIXELS_PER_PASS = 2 * 3840 * 2160  # working-image pixels per network pass (~1 GB peak at full size)
SELECTION_MODES = ("all", "largest", "center", "top_k")
# How the faces of a frame are ordered before ``face_indices`` picks positions in that order (ReActor's idea).
FACE_ORDERS = ("score", "size", "left_to_right", "right_to_left", "top_to_bottom", "bottom_to_top")
GFPGANER_MIN_EYE_DISTANCE = 5.0  # GFPGANer drops faces whose eyes are closer than this (facexlib eye_dist_threshold)
_MAX_FACE_INDEX = 9999  # "1-99999999" would only build a huge tuple; no frame holds that many faces


def working_scale(height: int, width: int, working_size: int | None) -> float:
    """Factor that brings the short side to ``working_size`` (never above 1; 0/None = full size)."""
    if not working_size:
        return 1.0
    return min(1.0, working_size / min(height, width))


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise FaceInputError(f"detect_faces expects [B,3,H,W] RGB images, got {getattr(images, 'shape', type(images))}")
    if images.shape[0] == 0:
        raise FaceInputError(f"detect_faces got an empty batch (0 frames): {tuple(images.shape)}")
    if images.shape[2] == 0 or images.shape[3] == 0:
        raise FaceInputError(f"detect_faces got frames of {images.shape[2]}x{images.shape[3]} pixels, which hold no image")
    if not images.is_floating_point():
        raise FaceInputError(f"detect_faces expects float images in 0..1, got {images.dtype}")


@torch.inference_mode()
def detect_faces(
    detector: FaceDetector,
    images: torch.Tensor,
    *,
    threshold: float | None = None,
    working_size: int | None = 0,
    nms_threshold: float | None = None,
) -> FaceBatch:
    """Detect faces in ``images`` (``[B,3,H,W]`` RGB 0..1, one size), batched (big frames a few per pass).

    Frames are shrunk so their short side is ``working_size`` (never enlarged;
    0/None = full size, as GFPGANer detects); boxes and landmarks come back in full-size pixels.
    Faces are ordered by frame, then by descending score; ``affine`` is None. ``threshold`` None is the
    family's default (RetinaFace 0.97, GFPGANer's; YOLOv5-face 0.7, upstream's); ``nms_threshold`` None
    the family's own (RetinaFace 0.4, YOLOv5-face 0.5).
    Frames with a side under ``MIN_FRAME_SIDE`` pixels hold no findable face: none is reported.
    """
    _check_images(images)
    check_working_size(working_size)
    batch, _, height, width = images.shape
    if min(height, width) < MIN_FRAME_SIDE:
        return FaceBatch([], [(height, width)] * batch)
    scale = working_scale(height, width, working_size)
    # Full-size detection of a 3840x2160 frame peaks at ~0.5 GB: big frames go through a few at a time.
    frames_per_pass = max(1, int(_PIXELS_PER_PASS // (height * width * scale * scale)))
    if batch > frames_per_pass:
        found: list[FaceRecord] = []
        for start in range(0, batch, frames_per_pass):
            part = detect_faces(detector, images[start : start + frames_per_pass], threshold=threshold,
                                working_size=working_size, nms_threshold=nms_threshold)
            found += offset_faces(part.faces, start)
        return FaceBatch(found, [(height, width)] * batch)
    x = images.to(detector.device, next(detector.network.parameters()).dtype)
    if scale < 1.0:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    net_h, net_w = x.shape[-2:]
    found = detector.detect(x, detector.family.default_threshold if threshold is None else threshold, nms_threshold)
    to_full = torch.tensor([width / net_w, height / net_h], device=found.boxes.device)
    boxes = (found.boxes * to_full.repeat(2)).tolist()
    points = (found.landmarks * to_full).cpu()
    faces = [
        FaceRecord(index, tuple(box), score, Landmarks.from_tensor(five))
        for index, box, score, five in zip(found.image_index.tolist(), boxes, found.scores.tolist(), points)
    ]
    return FaceBatch(faces, [(height, width)] * batch)


def _clipped_area(face: FaceRecord, height: int, width: int) -> float:
    """Box area inside the frame (facexlib's ``get_largest_face`` measure)."""
    x1, y1, x2, y2 = face.box
    return max(0.0, min(x2, width) - max(x1, 0)) * max(0.0, min(y2, height) - max(y1, 0))


def _eye_distance(face: FaceRecord) -> float:
    (lx, ly), (rx, ry) = face.landmarks.left_eye, face.landmarks.right_eye
    return math.hypot(rx - lx, ry - ly)


def parse_face_indices(indices: str | Sequence[int]) -> tuple[int, ...]:
    """Positions to keep, sorted and unique: ``"0"``, ``"0,2"``, ``"1-3"`` (inclusive), ``"0, 2-4"``; ``""`` = all."""
    if isinstance(indices, str):
        values: list[int] = []
        for part in indices.split(",") if indices.strip() else []:
            match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
            if match is None:
                raise FaceInputError(f"face indices {indices!r}: {part.strip()!r} is not an index (0, 2) or a range (1-3)")
            first, last = int(match[1]), int(match[2] or match[1])
            if last < first:
                raise FaceInputError(f"face indices {indices!r}: the range {part.strip()!r} runs backwards")
            if last > _MAX_FACE_INDEX:
                raise FaceInputError(f"face indices {indices!r}: {last} is beyond {_MAX_FACE_INDEX}")
            values.extend(range(first, last + 1))
    else:
        values = list(indices)
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= _MAX_FACE_INDEX for v in values):
            raise FaceInputError(f"face indices must be whole numbers from 0 to {_MAX_FACE_INDEX}, got {indices!r}")
    return tuple(sorted(set(values)))


def check_number(name: str, value, whole: bool = False) -> None:
    """FaceInputError unless ``value`` is a finite real number (a whole one if ``whole``); bools are not numbers."""
    if (not isinstance(value, Real) or isinstance(value, bool) or not math.isfinite(value)
            or (whole and value != int(value))):
        raise FaceInputError(f"{name} must be a {'whole ' if whole else ''}number, got {value!r}")


def check_working_size(working_size) -> None:
    """FaceInputError unless ``working_size`` is 0/None (full size) or at least ``MIN_WORKING_SIZE``."""
    if working_size is None:
        return
    check_number("working_size", working_size, whole=True)
    if working_size != 0 and not working_size >= MIN_WORKING_SIZE:
        raise FaceInputError(f"working_size must be 0 (full size) or at least {MIN_WORKING_SIZE} px (a smaller working "
                             f"image is too small for the detector to find faces in), got {working_size}")


def check_selection(
    mode: str = "all", top_k: int = 1, min_size: float = 0, max_size: float = 0, min_eye_distance: float = 0,
    order: str = "score",
) -> None:
    """FaceInputError for selection settings that cannot select anything meaningful."""
    if mode not in SELECTION_MODES:
        raise FaceInputError(f"unknown face selection {mode!r}; use one of {', '.join(SELECTION_MODES)}")
    if order not in FACE_ORDERS:
        raise FaceInputError(f"unknown face order {order!r}; use one of {', '.join(FACE_ORDERS)}")
    for name, value in (("top_k", top_k), ("min_face_size", min_size), ("max_face_size", max_size),
                        ("min_eye_distance", min_eye_distance)):
        check_number(name, value, whole=name == "top_k")
    if top_k < 1:
        raise FaceInputError(f"top_k must be at least 1, got {top_k}")
    if min_size < 0 or max_size < 0 or min_eye_distance < 0:
        raise FaceInputError(
            f"face size limits must not be negative (min_face_size {min_size}, max_face_size {max_size}, "
            f"min_eye_distance {min_eye_distance})"
        )
    if max_size and min_size > max_size:
        raise FaceInputError(f"min_face_size {min_size} is above max_face_size {max_size}: no face can be both")


def _order_key(order: str, height: int, width: int):
    """Sort key (ascending) that puts a frame's faces in ``order``."""
    if order == "score":
        return lambda f: -f.score
    if order == "size":
        return lambda f: -_clipped_area(f, height, width)
    axis, sign = {"left_to_right": (0, 1), "right_to_left": (0, -1), "top_to_bottom": (1, 1), "bottom_to_top": (1, -1)}[order]
    return lambda f: sign * (f.box[axis] + f.box[axis + 2])


def select_faces(
    faces: FaceBatch,
    mode: str = "all",
    top_k: int = 1,
    min_size: float = 0,
    max_size: float = 0,
    min_eye_distance: float = 0,
    order: str = "score",
    indices: str | Sequence[int] = (),
) -> FaceBatch:
    """Keep faces by size limits, then per frame: all, the largest, the one closest to the centre, or top-k by score;
    then put them in ``order`` and keep the positions ``indices`` of that order (empty = all).

    Sizes are the longer side of the box in pixels; 0 means no limit.
    ``min_eye_distance`` drops side or tiny faces as GFPGANer does (it uses 5 px).
    Positions beyond a frame's faces select nothing in that frame.
    """
    check_selection(mode, top_k, min_size, max_size, min_eye_distance, order)
    positions = parse_face_indices(indices)
    kept: list[FaceRecord] = []
    for index, (height, width) in enumerate(faces.image_sizes):
        frame = [
            f for f in (faces.faces[i] for i in faces.faces_in_image(index))
            if max(f.width, f.height) >= min_size
            and (not max_size or max(f.width, f.height) <= max_size)
            and _eye_distance(f) >= min_eye_distance
        ]
        if mode == "largest":
            frame = sorted(frame, key=lambda f: _clipped_area(f, height, width), reverse=True)[:1]
        elif mode == "center":
            def distance(f: FaceRecord) -> float:
                return math.hypot((f.box[0] + f.box[2]) / 2 - width / 2, (f.box[1] + f.box[3]) / 2 - height / 2)

            frame = sorted(frame, key=distance)[:1]
        elif mode == "top_k":
            frame = sorted(frame, key=lambda f: f.score, reverse=True)[:top_k]
        frame = sorted(frame, key=_order_key(order, height, width))  # stable: ties keep the score order
        if positions:
            frame = [frame[p] for p in positions if p < len(frame)]
        kept.extend(frame)
    return FaceBatch(kept, list(faces.image_sizes), faces.crop_size)


def _iou_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of ``[M,4]`` and ``[N,4]`` boxes."""
    from torchvision.ops import box_iou

    return box_iou(a, b) if len(a) and len(b) else torch.zeros(len(a), len(b), dtype=torch.float64)


def check_smoothing(strength: float) -> None:
    """FaceInputError unless ``strength`` lies in [0, 1) (1 would freeze every face at its first frame)."""
    check_number("smoothing strength", strength)
    if not 0.0 <= strength < 1.0:
        raise FaceInputError(f"smoothing strength must lie in [0, 1), got {strength!r}")


def smooth_landmarks(
    faces: FaceBatch, strength: float, min_iou: float = 0.3, previous: list[FaceRecord] | None = None
) -> FaceBatch:
    """Temporal smoothing for video batches: each face follows its match in the previous frame.

    Faces are matched one-to-one to the previous frame's faces, highest box IoU
    first (at least ``min_iou``); a matched face's landmarks and box become the
    exponential moving average ``strength * previous + (1 - strength) * current``.
    Unmatched faces start fresh. ``previous`` are the smoothed faces of the frame
    just before this batch, so consecutive batches of one video continue smoothly.
    """
    check_smoothing(strength)
    if strength == 0:
        return faces
    smoothed: list[FaceRecord] = []
    previous = list(previous or [])
    for index in range(len(faces.image_sizes)):
        current = [faces.faces[i] for i in faces.faces_in_image(index)]
        iou = _iou_matrix(torch.tensor([p.box for p in previous], dtype=torch.float64).view(-1, 4),
                          torch.tensor([c.box for c in current], dtype=torch.float64).view(-1, 4))
        while iou.numel() and iou.max() >= min_iou:
            p, c = divmod(int(iou.argmax()), iou.shape[1])
            iou[p, :], iou[:, c] = -1, -1  # one-to-one
            old, new = previous[p], current[c]
            points = strength * old.landmarks.as_tensor(torch.float64) + (1 - strength) * new.landmarks.as_tensor(torch.float64)
            box = tuple(strength * o + (1 - strength) * n for o, n in zip(old.box, new.box))
            current[c] = FaceRecord(new.image_index, box, new.score, Landmarks.from_tensor(points))
        smoothed.extend(current)
        previous = current
    return FaceBatch(smoothed, list(faces.image_sizes), faces.crop_size)
