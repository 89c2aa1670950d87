"""The one interface the pipeline, the nodes and the CLI drive, whatever network family finds the faces."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn


class FaceModelError(Exception):
    """A detector or parser weights file that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Detections:
    """The faces a detector found in a batch, in the pixels of the images it was given.

    Rows are ordered by image, then by descending score. Landmarks are, in image order: the eye on the
    left, the eye on the right, the nose tip, the mouth corner on the left, the one on the right.
    """

    image_index: torch.Tensor  # [N] long
    boxes: torch.Tensor  # [N,4] x1 y1 x2 y2, float32
    scores: torch.Tensor  # [N]
    landmarks: torch.Tensor  # [N,5,2] (x, y)

    def __len__(self) -> int:
        return len(self.scores)


class FaceDetector(ABC):
    """A loaded face detector: ``detect(images)`` on ``[B,3,H,W]`` RGB 0..1 frames of one size.

    ``network`` is the torch module (what ComfyUI's model management moves between devices);
    ``family`` and ``variant`` say which detector it is (``"RetinaFace"``, ``"mobilenet0.25"``).
    """

    family: "DetectorFamily"
    variant: str
    network: nn.Module
    path: Path | None

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    @property
    def name(self) -> str:
        return f"{self.family.name} {self.variant}"

    def detect(self, images: torch.Tensor, threshold: float, nms_threshold: float | None = None) -> Detections:
        """Faces scoring above ``threshold`` in ``images`` (already on ``device``), after NMS at
        ``nms_threshold`` IoU (None: the family's own)."""
        return self._detect(images, threshold, self.family.nms_threshold if nms_threshold is None else nms_threshold)

    @abstractmethod
    def _detect(self, images: torch.Tensor, threshold: float, nms_threshold: float) -> Detections:
        """``detect`` for this family, with the NMS threshold settled."""


@dataclass(frozen=True)
class DetectorFamily:
    """A family of detector networks: how to tell its files from their keys, and how to load one.

    ``variant`` names the variant a state dict holds (None: not this family); ``load`` builds the
    detector from a state dict of that variant (``FaceModelError`` when its tensors do not fit).
    """

    name: str
    variant: Callable[[dict[str, torch.Tensor]], str | None]
    load: Callable[[dict[str, torch.Tensor], str, Path | None], FaceDetector]
    default_threshold: float  # this pack's default confidence (GFPGANer's for RetinaFace, upstream's for YOLOv5-face)
    facelib_threshold: float  # the confidence facexlib's / CodeFormer's FaceRestoreHelper detects at (other packs)
    nms_threshold: float
    files: tuple[str, ...]  # the official file names
    licence: str


def load_strictly(network: nn.Module, state_dict: dict[str, torch.Tensor], path: Path | None, what: str) -> nn.Module:
    """``network`` with ``state_dict`` loaded strictly; FaceModelError naming ``what`` when the tensors do not fit."""
    from ..model_files import state_dict_mismatch

    mismatch = state_dict_mismatch(network, state_dict)
    if mismatch:
        raise FaceModelError(f"{path}: {what} weights that do not fit the network: {mismatch}")
    network.load_state_dict(state_dict, strict=True)
    return network


def nms_per_image(boxes: torch.Tensor, scores: torch.Tensor, image_index: torch.Tensor, iou: float) -> torch.Tensor:
    """Indices NMS keeps within each image, ordered by image, then by descending score."""
    from torchvision.ops import batched_nms

    keep = batched_nms(boxes, scores, image_index, iou)
    return keep[torch.argsort(image_index[keep], stable=True)]
