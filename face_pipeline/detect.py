"""Face detection with facexlib's RetinaFace networks, batched, with our own pre/post-processing.

The network layers are facexlib's (see ``retinaface.py``); weights always come
from a local file. Anchors are generated vectorised and cached per input size;
decoding, thresholding and NMS run on the detector's device for the whole batch.
The numbers follow facexlib's ``RetinaFace.detect_faces`` (BGR means, variances,
``score > threshold``, NMS in the pixels of the image the network saw).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from numbers import Real
from pathlib import Path

import torch
import torch.nn.functional as F

from .errors import FaceInputError
from .faces import FaceBatch, FaceRecord, Landmarks, offset_faces
from .retinaface import RetinaFaceNet, backbone_from_keys


class FaceModelError(Exception):
    """A detector or parser weights file that cannot be used; the message says which and why."""


# BGR channel means the RetinaFace weights were trained with, on 0..255 pixels.
_BGR_MEAN = (104.0, 117.0, 123.0)
_MIN_SIZES = ((16, 32), (64, 128), (256, 512))
# The smallest anchor the network matches faces to is 16 px (stride 8): a frame whose short side is below
# that holds no face it can find, so such frames are faceless rather than errors.
MIN_FRAME_SIDE = _MIN_SIZES[0][0]
# The smallest working size (short side, px) worth detecting at. A face must span the smallest anchor, 16 px, and
# the network needs some context: face close-ups (the face a half of the frame) were found at the default threshold
# from 48-64 px, never at 32 px or below. Below 64 px only a face filling the frame could be found, so smaller
# working sizes, which would miss every face of a photo, are refused.
MIN_WORKING_SIZE = 64
_STEPS = (8, 16, 32)
_VARIANCE = (0.1, 0.2)
_PIXELS_PER_PASS = 2 * 3840 * 2160  # working-image pixels per network pass (~1 GB peak at full size)
SELECTION_MODES = ("all", "largest", "center", "top_k")
# How the faces of a frame are ordered before ``face_indices`` picks positions in that order (ReActor's idea).
FACE_ORDERS = ("score", "size", "left_to_right", "right_to_left", "top_to_bottom", "bottom_to_top")
GFPGANER_MIN_EYE_DISTANCE = 5.0  # GFPGANer drops faces whose eyes are closer than this (facexlib eye_dist_threshold)
_MAX_FACE_INDEX = 9999  # "1-99999999" would only build a huge tuple; no frame holds that many faces


@dataclass
class RetinaFaceDetector:
    """A loaded RetinaFace: the network (eval mode, no gradients), its backbone and source file."""

    network: RetinaFaceNet
    backbone: str  # "mobilenet0.25" or "resnet50"
    path: Path | None = None

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A local weights file's state dict, read safely; its errors as FaceModelError."""
    from ..model_files import ModelLoadError, load_state_dict

    try:
        return load_state_dict(path)
    except ModelLoadError as error:
        raise FaceModelError(str(error)) from error


def load_detector(path: str | Path, device: str | torch.device = "cpu") -> RetinaFaceDetector:
    """Build a RetinaFace (backbone detected from the keys) and load local weights, strictly."""
    from ..model_files import state_dict_mismatch

    path = Path(path)
    state_dict = {key.removeprefix("module."): value for key, value in _read_weights(path).items()}
    backbone = backbone_from_keys(state_dict)
    if backbone is None:
        raise FaceModelError(
            f"{path}: not a RetinaFace detector (expected facexlib's detection_Resnet50_Final.pth or "
            f"detection_mobilenet0.25_Final.pth layout)."
        )
    network = RetinaFaceNet(backbone)
    mismatch = state_dict_mismatch(network, state_dict)
    if mismatch:
        raise FaceModelError(f"{path}: RetinaFace {backbone} weights that do not fit the network: {mismatch}")
    network.load_state_dict(state_dict, strict=True)
    network.eval().requires_grad_(False).to(device)
    return RetinaFaceDetector(network, backbone, path)


@lru_cache(maxsize=16)
def _priors(height: int, width: int) -> torch.Tensor:
    """Anchor boxes (cx, cy, w, h), normalised, in the order the heads emit them (CPU, float32)."""
    per_level = []
    for step, sizes in zip(_STEPS, _MIN_SIZES):
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        cy, cx = torch.meshgrid(
            (torch.arange(rows, dtype=torch.float64) + 0.5) * step / height,
            (torch.arange(cols, dtype=torch.float64) + 0.5) * step / width,
            indexing="ij",
        )
        anchors = [
            torch.stack([cx, cy, torch.full_like(cx, s / width), torch.full_like(cy, s / height)], dim=-1)
            for s in sizes
        ]
        per_level.append(torch.stack(anchors, dim=2).reshape(-1, 4))  # rows, cols, anchor -> flat
    return torch.cat(per_level).float()


def working_scale(height: int, width: int, working_size: int | None) -> float:
    """Factor that brings the short side to ``working_size`` (never above 1; 0/None = full size)."""
    if not working_size:
        return 1.0
    return min(1.0, working_size / min(height, width))


def _to_network_input(images: torch.Tensor) -> torch.Tensor:
    """RGB 0..1 -> BGR 0..255 minus the training means."""
    mean = torch.tensor(_BGR_MEAN, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return images.flip(1) * 255.0 - mean


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
    detector: RetinaFaceDetector,
    images: torch.Tensor,
    *,
    threshold: float = 0.97,
    working_size: int | None = 0,
    nms_threshold: float = 0.4,
) -> FaceBatch:
    """Detect faces in ``images`` (``[B,3,H,W]`` RGB 0..1, one size), batched (big frames a few per pass).

    Frames are shrunk so their short side is ``working_size`` (never enlarged;
    0/None = full size, as GFPGANer detects); boxes and landmarks come back in full-size pixels.
    Faces are ordered by frame, then by descending score; ``affine`` is None.
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
    dtype = next(detector.network.parameters()).dtype
    x = images.to(detector.device, dtype)
    if scale < 1.0:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    net_h, net_w = x.shape[-2:]
    loc, scores, landmarks = (t.float() for t in detector.network(_to_network_input(x)))
    priors = _priors(net_h, net_w).to(loc.device)

    frame, anchor = torch.nonzero(scores > threshold, as_tuple=True)
    scores, prior = scores[frame, anchor], priors[anchor]
    loc, landmarks = loc[frame, anchor], landmarks[frame, anchor].view(-1, 5, 2)
    centers = prior[:, :2] + loc[:, :2] * _VARIANCE[0] * prior[:, 2:]
    sizes = prior[:, 2:] * torch.exp(loc[:, 2:] * _VARIANCE[1])
    points = prior[:, None, :2] + landmarks * _VARIANCE[0] * prior[:, None, 2:]
    # normalised -> working-image pixels, where facexlib runs its NMS
    to_working = torch.tensor([net_w, net_h], device=loc.device, dtype=torch.float32)
    boxes = torch.cat([centers - sizes / 2, centers - sizes / 2 + sizes], dim=1) * to_working.repeat(2)
    keep = _nms(boxes, scores, frame, nms_threshold)

    to_full = torch.tensor([width / net_w, height / net_h], device=loc.device)
    boxes = (boxes[keep] * to_full.repeat(2)).tolist()
    points = (points[keep] * to_working * to_full).cpu()
    faces = [
        FaceRecord(index, tuple(box), score, Landmarks.from_tensor(five))
        for index, box, score, five in zip(frame[keep].tolist(), boxes, scores[keep].tolist(), points)
    ]
    return FaceBatch(faces, [(height, width)] * batch)


def _nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, threshold: float) -> torch.Tensor:
    """Indices kept by NMS within each group (frame), ordered by group, then by descending score."""
    from torchvision.ops import batched_nms

    keep = batched_nms(boxes, scores, groups, threshold)
    return keep[torch.argsort(groups[keep], stable=True)]


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
