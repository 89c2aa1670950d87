"""Warp restored faces back into their frames and blend them with soft masks.

Each face is warped only over its own region of the frame. The feathered mask
is built once in crop space (erode, then blur) and warped with the face, so its
erosion and blur scale with the face size, as facexlib's do.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from .align import warp_affine
from .faces import FaceBatch

MASK_MODES = ("feathered", "parsing")
_LUMA = (0.299, 0.587, 0.114)


def _gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[N,C,H,W]`` with zero padding."""
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = image.shape[1]
    image = F.conv2d(image, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), padding=(0, radius), groups=channels)
    return F.conv2d(image, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), padding=(radius, 0), groups=channels)


@lru_cache(maxsize=8)
def feathered_mask(crop_size: int, feather: float = 1.0) -> torch.Tensor:
    """Crop-space blend mask ``[S,S]``: 1 in the middle, fading to 0 before the crop's edge.

    facexlib erodes the warped mask by ``2 * sqrt(area) / 20`` pixels and blurs it
    with a kernel of the same size; in crop space that is a fixed fraction of
    the crop, scaled here by ``feather`` (0 = a hard edge).
    """
    edge = crop_size / 20 * feather
    margin = 1 + round(edge)  # erosion from each side
    mask = torch.zeros(1, 1, crop_size, crop_size)
    mask[..., margin : crop_size - margin, margin : crop_size - margin] = 1
    if edge >= 0.5:
        sigma = 0.3 * (edge - 1) + 0.8  # OpenCV's sigma for a (2 * edge + 1) kernel
        mask = _gaussian_blur(mask, sigma)
    return mask[0, 0]


def match_colors(restored: torch.Tensor, reference: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Shift each channel of ``restored`` to the mean and spread of ``reference`` (weighted by ``weight``)."""
    weight = weight.expand_as(restored[:, :1])
    total = weight.sum(dim=(2, 3), keepdim=True).clamp_min(1e-6)

    def stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = (x * weight).sum(dim=(2, 3), keepdim=True) / total
        std = (((x - mean) ** 2) * weight).sum(dim=(2, 3), keepdim=True).div(total).sqrt()
        return mean, std

    mean_r, std_r = stats(restored)
    mean_ref, std_ref = stats(reference)
    return ((restored - mean_r) * (std_ref / std_r.clamp_min(1e-4)) + mean_ref).clamp(0, 1)


def _is_gray(frame: torch.Tensor) -> bool:
    return frame.shape[0] == 1 or bool((frame[0] == frame[1]).all() and (frame[1] == frame[2]).all())


def crop_to_target_affines(faces: FaceBatch, target_sizes: list[tuple[int, int]]) -> torch.Tensor:
    """``[N,2,3]`` affines from crop pixels to pixels of the (possibly resized) target frames."""
    from .align import invert_affine

    affines = torch.stack([face.affine.to(torch.float64) for face in faces.faces])
    crop_to_source = invert_affine(affines)
    rows = []
    for face, matrix in zip(faces.faces, crop_to_source):
        (src_h, src_w), (dst_h, dst_w) = faces.image_sizes[face.image_index], target_sizes[face.image_index]
        sx, sy = dst_w / src_w, dst_h / src_h
        # pixel centres: x_target = sx * (x + 0.5) - 0.5
        scale = torch.tensor([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5]], dtype=torch.float64)
        rows.append(scale[:, :2] @ matrix + torch.cat([torch.zeros(2, 2, dtype=torch.float64), scale[:, 2:]], 1))
    return torch.stack(rows)


def _region(affine: torch.Tensor, crop_size: int, height: int, width: int) -> tuple[int, int, int, int] | None:
    """Pixel window ``(x0, y0, x1, y1)`` of the frame that the warped crop covers, or None."""
    corners = torch.tensor(
        [[-0.5, -0.5, 1], [crop_size - 0.5, -0.5, 1], [-0.5, crop_size - 0.5, 1], [crop_size - 0.5, crop_size - 0.5, 1]],
        dtype=torch.float64,
    )
    mapped = corners @ affine.T
    x0, y0 = (mapped.min(dim=0).values.floor().long()).tolist()
    x1, y1 = (mapped.max(dim=0).values.ceil().long() + 1).tolist()
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def paste_faces(
    images: torch.Tensor,
    faces: FaceBatch,
    restored: torch.Tensor,
    *,
    mask: str = "feathered",
    parse_masks: torch.Tensor | None = None,
    feather: float = 1.0,
    color_correction: bool = False,
    blend: float = 1.0,
    targets: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend ``restored`` crops (``[N,3,S,S]``, order of ``faces``) back into their frames.

    ``images`` ``[B,C,H,W]`` (C = 1, 3 or 4; alpha is kept) are the frames the faces were
    detected on; ``targets``, if given, are resized copies to paste into instead
    (e.g. after an upscaler). Returns new frames and a ``[B,H',W']`` union mask of
    where faces were blended. ``blend`` scales the masks (0 = frames unchanged,
    1 = restored faces fully in). Inputs are never modified.
    """
    if mask not in MASK_MODES:
        raise ValueError(f"mask must be one of {MASK_MODES}, got {mask!r}")
    if mask == "parsing" and parse_masks is None:
        raise ValueError("mask='parsing' needs parse_masks (run a face parser on the restored crops)")
    if len(faces) != restored.shape[0]:
        raise ValueError(f"{len(faces)} faces but {restored.shape[0]} restored crops")
    frames = images if targets is None else targets
    if targets is not None and (targets.shape[0] != images.shape[0] or targets.shape[1] != images.shape[1]):
        raise ValueError(f"targets {tuple(targets.shape)} do not match images {tuple(images.shape)} in batch or channels")
    batch, channels, height, width = frames.shape
    color_channels = 1 if channels == 1 else 3
    output = frames.clone()
    union = torch.zeros(batch, height, width, dtype=frames.dtype, device=frames.device)
    if len(faces) == 0:
        return output, union

    device = restored.device
    crop_size = restored.shape[-1]
    soft = feathered_mask(crop_size, feather).to(device)
    masks = soft.expand(len(faces), crop_size, crop_size)
    if mask == "parsing":
        masks = masks * parse_masks.to(device, masks.dtype)
    crops = restored.float()
    if color_correction:
        sources = images.to(device).float()[[f.image_index for f in faces.faces]]
        sources = sources.expand(-1, 3, -1, -1) if color_channels == 1 else sources[:, :3]
        originals = warp_affine(sources, torch.stack([f.affine for f in faces.faces]), (crop_size, crop_size))
        crops = match_colors(crops, originals, masks[:, None])
    affines = crop_to_target_affines(faces, [(height, width)] * batch)

    for index, (face, affine) in enumerate(zip(faces.faces, affines)):
        region = _region(affine, crop_size, height, width)
        if region is None:
            continue
        x0, y0, x1, y1 = region
        frame = output[face.image_index]
        layers = torch.cat([crops[index], masks[index][None]])[None]
        # bicubic: the round trip frame -> crop -> frame stays sharp (bilinear both ways visibly softens)
        warped = warp_affine(
            layers, affine[None], (y1 - y0, x1 - x0), offsets=torch.tensor([[x0, y0]]), mode="bicubic"
        )[0]
        warped = warped.to(output.device, output.dtype)
        face_pixels, alpha = warped[:3], warped[3:].clamp(0, 1) * blend
        if color_channels == 1 or _is_gray(frame[:3]):
            luma = torch.tensor(_LUMA, device=output.device, dtype=output.dtype).view(3, 1, 1)
            face_pixels = (face_pixels * luma).sum(dim=0, keepdim=True).expand(color_channels, -1, -1)
        window = frame[:color_channels, y0:y1, x0:x1]
        blended = alpha * face_pixels + (1 - alpha) * window
        frame[:color_channels, y0:y1, x0:x1] = blended.clamp(0, 1)
        union_window = union[face.image_index, y0:y1, x0:x1]
        union[face.image_index, y0:y1, x0:x1] = torch.maximum(union_window, alpha[0])
    return output, union
