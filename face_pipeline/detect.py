"""Face detection with facexlib's RetinaFace networks, batched, with our own pre/post-processing.

facexlib supplies only the network modules; weights always come from a local
file (facexlib's own helpers would download them). Anchors are generated
vectorised and cached per input size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

from .faces import FaceBatch, FaceRecord, Landmarks


class FaceModelError(Exception):
    """A detector or parser weights file that cannot be used; the message says which and why."""


# BGR channel means the RetinaFace weights were trained with, on 0..255 pixels.
_BGR_MEAN = (104.0, 117.0, 123.0)
_MIN_SIZES = ((16, 32), (64, 128), (256, 512))
_STEPS = (8, 16, 32)
_VARIANCE = (0.1, 0.2)


@dataclass
class RetinaFaceDetector:
    network: torch.nn.Module
    backbone: str  # "mobilenet0.25" or "resnet50"
    path: Path | None = None

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from ..gfpgan_arch import ModelLoadError, load_state_dict

    try:
        return load_state_dict(path)
    except ModelLoadError as error:
        raise FaceModelError(str(error)) from error


def _build_retinaface(name: str, device: torch.device) -> torch.nn.Module:
    """facexlib's RetinaFace, with its ResNet-50 backbone built untrained (``weights=None``).

    facexlib calls ``torchvision.models.resnet50(pretrained=False)``; newer torchvision
    deprecates ``pretrained``, so that one call is routed to the ``weights=None`` form.
    """
    import torchvision.models as models
    from facexlib.detection.retinaface import RetinaFace

    resnet50 = models.resnet50
    models.resnet50 = lambda *args, **kwargs: resnet50(weights=None)
    try:
        return RetinaFace(network_name=name, half=False, phase="test", device=device)
    finally:
        models.resnet50 = resnet50


def load_detector(path: str | Path, device: str | torch.device = "cpu") -> RetinaFaceDetector:
    """Build a RetinaFace (backbone detected from the keys) and load local weights, strictly."""
    path = Path(path)
    state_dict = _read_weights(path)
    if "body.stage1.0.0.weight" in state_dict:
        backbone, name = "mobilenet0.25", "mobile0.25"
    elif "body.layer1.0.conv1.weight" in state_dict:
        backbone, name = "resnet50", "resnet50"
    else:
        raise FaceModelError(
            f"{path}: not a RetinaFace detector (expected facexlib's detection_Resnet50_Final.pth or "
            f"detection_mobilenet0.25_Final.pth layout)."
        )
    network = _build_retinaface(name, torch.device(device))
    try:
        network.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise FaceModelError(f"{path}: RetinaFace {backbone} weights that do not fit the network: {error}") from error
    network.eval().requires_grad_(False)
    return RetinaFaceDetector(network, backbone, path)


@lru_cache(maxsize=16)
def _priors(height: int, width: int) -> torch.Tensor:
    """Anchor boxes (cx, cy, w, h), normalised, in the order the heads emit them."""
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


@torch.inference_mode()
def detect_faces(
    detector: RetinaFaceDetector,
    images: torch.Tensor,
    *,
    threshold: float = 0.97,
    working_size: int | None = 640,
    nms_threshold: float = 0.4,
) -> FaceBatch:
    """Detect faces in ``images`` (``[B,3,H,W]`` RGB 0..1, one size); coordinates in full-size pixels."""
    from torchvision.ops import nms

    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"detect_faces expects [B,3,H,W] RGB images, got shape {tuple(images.shape)}")
    batch, _, height, width = images.shape
    scale = working_scale(height, width, working_size)
    x = images.to(detector.device, torch.float32)
    if scale < 1.0:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    net_h, net_w = x.shape[-2:]
    loc, conf, landmarks = detector.network(_to_network_input(x))
    priors = _priors(net_h, net_w).to(loc.device)

    centers = priors[:, :2] + loc[..., :2] * _VARIANCE[0] * priors[:, 2:]
    sizes = priors[:, 2:] * torch.exp(loc[..., 2:] * _VARIANCE[1])
    boxes = torch.cat([centers - sizes / 2, centers + sizes / 2], dim=-1)
    points = priors[:, None, :2] + landmarks.view(batch, -1, 5, 2) * _VARIANCE[0] * priors[:, None, 2:]
    # normalised -> full-size pixels (the working image covers the whole frame)
    boxes = boxes * torch.tensor([width, height, width, height], device=boxes.device)
    points = points * torch.tensor([width, height], device=points.device)
    scores = conf[..., 1]

    result = FaceBatch(image_sizes=[(height, width)] * batch)
    for index in range(batch):
        keep = scores[index] > threshold
        frame_boxes, frame_scores, frame_points = boxes[index][keep], scores[index][keep], points[index][keep]
        order = nms(frame_boxes, frame_scores, nms_threshold)  # sorted by score, descending
        for i in order.tolist():
            result.faces.append(
                FaceRecord(
                    image_index=index,
                    box=tuple(float(v) for v in frame_boxes[i]),
                    score=float(frame_scores[i]),
                    landmarks=Landmarks.from_tensor(frame_points[i].cpu()),
                )
            )
    return result


def select_faces(
    faces: FaceBatch, mode: str = "all", top_k: int = 1, min_size: float = 0, max_size: float = 0
) -> FaceBatch:
    """Keep faces by size limits, then per frame: all, the largest, the one closest to the centre, or top-k by score.

    Sizes are the longer side of the box in pixels; 0 means no limit.
    """
    if mode not in ("all", "largest", "center", "top_k"):
        raise ValueError(f"unknown face selection {mode!r}; use all, largest, center or top_k")
    kept: list[FaceRecord] = []
    for index, (height, width) in enumerate(faces.image_sizes):
        frame = [faces.faces[i] for i in faces.faces_in_image(index)]
        frame = [
            f for f in frame
            if max(f.width, f.height) >= min_size and (not max_size or max(f.width, f.height) <= max_size)
        ]
        if mode == "largest":
            frame = sorted(frame, key=lambda f: f.width * f.height, reverse=True)[:1]
        elif mode == "center":
            def distance(f: FaceRecord) -> float:
                return ((f.box[0] + f.box[2]) / 2 - width / 2) ** 2 + ((f.box[1] + f.box[3]) / 2 - height / 2) ** 2

            frame = sorted(frame, key=distance)[:1]
        elif mode == "top_k":
            frame = sorted(frame, key=lambda f: f.score, reverse=True)[: max(0, top_k)]
        kept.extend(frame)
    return FaceBatch(kept, list(faces.image_sizes), faces.crop_size)


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    overlap = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - overlap
    return overlap / union if union > 0 else 0.0


def smooth_landmarks(
    faces: FaceBatch, strength: float, min_iou: float = 0.3, previous: list[FaceRecord] | None = None
) -> FaceBatch:
    """Temporal smoothing for video batches: each face follows its match in the previous frame.

    A face is matched to the previous frame's face with the highest box IoU (at
    least ``min_iou``); its landmarks and box become an exponential moving average
    ``strength * previous + (1 - strength) * current``. Unmatched faces start fresh.
    ``previous`` are the smoothed faces of the frame just before this batch, so
    consecutive batches of one video continue smoothly.
    """
    if not 0.0 <= strength < 1.0:
        raise ValueError(f"smoothing strength must lie in [0, 1), got {strength}")
    if strength == 0:
        return faces
    smoothed: list[FaceRecord] = []
    previous = list(previous or [])
    for index in range(len(faces.image_sizes)):
        current = []
        for face in (faces.faces[i] for i in faces.faces_in_image(index)):
            match = max(previous, key=lambda p: _iou(p.box, face.box), default=None)
            if match is not None and _iou(match.box, face.box) >= min_iou:
                points = strength * match.landmarks.as_tensor(torch.float64) + (1 - strength) * face.landmarks.as_tensor(torch.float64)
                box = tuple(strength * p + (1 - strength) * c for p, c in zip(match.box, face.box))
                face = FaceRecord(face.image_index, box, face.score, Landmarks.from_tensor(points))
            current.append(face)
        smoothed.extend(current)
        previous = current
    return FaceBatch(smoothed, list(faces.image_sizes), faces.crop_size)
