"""Restore frames that are already aligned face crops (the CLI's ``--aligned``), keeping what they were given."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..face_restorers import FaceRestorer, as_face_restorer
from .align import as_rgb
from .paste import is_gray, to_gray
from .pipeline import validate_images
from .restore import restore_crops


def aligned_network_crops(restorer: FaceRestorer, crops: torch.Tensor) -> torch.Tensor:
    """``[N,C,H,W]`` aligned face crops as the network takes them: RGB, resized to its crop size."""
    validate_images(crops, "aligned crops")
    size = restorer.crop_size
    rgb = as_rgb(crops).float()
    if rgb.shape[-2:] != (size, size):
        rgb = F.interpolate(rgb, size=(size, size), mode="bilinear", antialias=True)
    return rgb


def aligned_results(restored: torch.Tensor, crops: torch.Tensor) -> torch.Tensor:
    """The network's ``restored`` crops as the ``crops`` came: their size, gray where they were gray, alpha kept."""
    restored = restored.to(crops.device, torch.float32)
    if restored.shape[-2:] != crops.shape[-2:]:
        restored = F.interpolate(restored, size=crops.shape[-2:], mode="bicubic", antialias=True).clamp(0, 1)
    color_channels = 1 if crops.shape[1] == 1 else 3
    out = torch.stack([
        to_gray(face, color_channels) if is_gray(crop[:color_channels]) else face for face, crop in zip(restored, crops)
    ])
    return torch.cat([out, crops[:, 3:].float()], dim=1).to(crops.dtype)


def restore_aligned_crops(restorer: FaceRestorer | nn.Module, crops: torch.Tensor, **options) -> torch.Tensor:
    """Restore ``[N,C,H,W]`` aligned face crops (C = 1, 3 or 4, 0..1) and return them as they came, as the full
    pipeline returns frames: same size (resized to the network's and back), gray where they were gray, alpha kept.
    ``options`` go to ``restore_crops``."""
    restorer = as_face_restorer(restorer)
    return aligned_results(restore_crops(restorer, aligned_network_crops(restorer, crops), **options), crops)
