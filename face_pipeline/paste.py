"""Warp restored faces back into their frames and blend them with soft masks.

Each face is warped only over its own region of the frame, on the device of the
restored crops. The feathered mask is built once in crop space (erode, then
blur) and warped with the face, so its erosion and blur scale with the face
size, as facexlib's do. Blending happens where the output frames live, one face
window at a time, in the order of the faces.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from .align import as_rgb, invert_affine, warp_affine
from .errors import FaceInputError
from .faces import FaceBatch

MASK_MODES = ("feathered", "parsing")
_LUMA = (0.299, 0.587, 0.114)


def check_paste_options(*, mask: str = "feathered", feather: float = 1.0, blend: float = 1.0) -> None:
    """``FaceInputError`` for paste options outside their ranges (``PasteSettings`` and ``paste_faces`` share it)."""
    if mask not in MASK_MODES:
        raise FaceInputError(f"mask must be one of {MASK_MODES}, got {mask!r}")
    if not feather >= 0:  # (NaN fails too)
        raise FaceInputError(f"feather must be >= 0, got {feather}")
    if not 0.0 <= blend <= 1.0:
        raise FaceInputError(f"blend must lie in [0, 1], got {blend}")


def gaussian_blur(image: torch.Tensor, sigma: float, radius: int | None = None, border: str = "zeros") -> torch.Tensor:
    """Separable Gaussian blur of ``[N,C,H,W]``.

    ``radius`` defaults to ``ceil(3 * sigma)``; ``border`` is ``"zeros"`` or
    ``"reflect"`` (OpenCV's default border, BORDER_REFLECT_101).
    """
    radius = radius if radius is not None else max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = image.shape[1]
    horizontal = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    vertical = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    if border == "reflect":
        image = F.pad(image, (radius, radius, radius, radius), mode="reflect")
        return F.conv2d(F.conv2d(image, horizontal, groups=channels), vertical, groups=channels)
    image = F.conv2d(image, horizontal, padding=(0, radius), groups=channels)
    return F.conv2d(image, vertical, padding=(radius, 0), groups=channels)


@lru_cache(maxsize=8)
def _cached_feathered_mask(crop_size: int, feather: float) -> torch.Tensor:
    edge = crop_size / 20 * feather
    margin = 1 + round(edge)  # erosion from each side
    mask = torch.zeros(1, 1, crop_size, crop_size)
    mask[..., margin : crop_size - margin, margin : crop_size - margin] = 1
    if edge >= 0.5:
        sigma = 0.3 * (edge - 1) + 0.8  # OpenCV's sigma for a (2 * edge + 1) kernel
        mask = gaussian_blur(mask, sigma)
    return mask[0, 0]


def feathered_mask(crop_size: int, feather: float = 1.0) -> torch.Tensor:
    """Crop-space blend mask ``[S,S]``: 1 in the middle, fading to 0 before the crop's edge.

    facexlib erodes the warped mask by ``sqrt(area) / 20`` pixels from each side
    and blurs it with a kernel twice that size; in crop space that is a fixed
    fraction of the crop, scaled here by ``feather`` (0 = a hard edge).
    """
    check_paste_options(feather=feather)
    return _cached_feathered_mask(crop_size, float(feather)).clone()


def match_colors(restored: torch.Tensor, reference: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Shift each channel of ``restored`` to the mean and spread of ``reference``.

    Both statistics are taken over the same pixels, weighted by ``weight`` ``[N,1,S,S]``
    (0 = left out, e.g. crop pixels that lie outside the frame).
    """
    weight = weight.expand_as(restored[:, :1])
    total = weight.sum(dim=(2, 3), keepdim=True).clamp_min(1e-6)

    def stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = (x * weight).sum(dim=(2, 3), keepdim=True) / total
        std = (((x - mean) ** 2) * weight).sum(dim=(2, 3), keepdim=True).div(total).sqrt()
        return mean, std

    mean_r, std_r = stats(restored)
    mean_ref, std_ref = stats(reference)
    return ((restored - mean_r) * (std_ref / std_r.clamp_min(1e-4)) + mean_ref).clamp(0, 1)


def is_gray(frame: torch.Tensor) -> bool:
    return frame.shape[0] == 1 or bool((frame[0] == frame[1]).all() and (frame[1] == frame[2]).all())


def to_gray(rgb: torch.Tensor, channels: int) -> torch.Tensor:
    """``[...,3,H,W]`` RGB as its luma, repeated over ``channels`` (1 for a gray frame, 3 for a gray RGB one)."""
    weights = torch.tensor(_LUMA, dtype=rgb.dtype, device=rgb.device).view(3, 1, 1)
    gray = (rgb * weights).sum(dim=-3, keepdim=True)
    return gray.expand(*gray.shape[:-3], channels, *gray.shape[-2:])


def crop_to_target_affines(faces: FaceBatch, target_sizes: list[tuple[int, int]]) -> torch.Tensor:
    """``[N,2,3]`` float64 affines from crop pixels to pixels of the (possibly resized) target frames."""
    affines = torch.stack([face.affine.to(torch.float64) for face in faces.faces])
    crop_to_source = invert_affine(affines)
    rows = []
    for face, matrix in zip(faces.faces, crop_to_source):
        (src_h, src_w), (dst_h, dst_w) = faces.image_sizes[face.image_index], target_sizes[face.image_index]
        sx, sy = dst_w / src_w, dst_h / src_h
        # pixel centres: x_target = sx * (x + 0.5) - 0.5
        scale = torch.tensor([[sx, 0.0], [0.0, sy]], dtype=torch.float64)
        shift = torch.tensor([[0.5 * sx - 0.5], [0.5 * sy - 0.5]], dtype=torch.float64)
        rows.append(torch.cat([scale @ matrix[:, :2], scale @ matrix[:, 2:] + shift], dim=1))
    return torch.stack(rows)


def _warped_window(affine: torch.Tensor, crop_size: int, height: int, width: int) -> tuple[int, int, int, int] | None:
    """Pixel window ``(x0, y0, x1, y1)`` of the frame that the warped crop covers, or None."""
    low, high = -0.5, crop_size - 0.5
    corners = torch.tensor([[low, low, 1], [high, low, 1], [low, high, 1], [high, high, 1]], dtype=torch.float64)
    mapped = corners @ affine.T
    x0, y0 = mapped.min(dim=0).values.floor().long().tolist()
    x1, y1 = (mapped.max(dim=0).values.ceil().long() + 1).tolist()
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _in_frame_crops(
    images: torch.Tensor, faces: FaceBatch, crop_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each face's crop of its own frame ``[N,3,S,S]`` and how much of each crop pixel lies in the frame ``[N,1,S,S]``.

    Only each face's window of the frame moves to ``device``, never a whole frame. The
    coverage is a ones-image warped through the same affine, so pixels sampled from
    outside the frame (black here, gray in the aligned crops) can be left out.
    """
    rgb = as_rgb(images)
    height, width = rgb.shape[-2:]
    layers = torch.zeros(len(faces), 4, crop_size, crop_size, device=device)
    crop_to_frame = invert_affine(torch.stack([face.affine.to(torch.float64) for face in faces.faces]))
    for index, (face, to_frame) in enumerate(zip(faces.faces, crop_to_frame)):
        window = _warped_window(to_frame, crop_size, height, width)
        if window is None:
            continue
        x0, y0, x1, y1 = window
        pixels = rgb[face.image_index, :, y0:y1, x0:x1].to(device, torch.float32)
        source = torch.cat([pixels, torch.ones_like(pixels[:1])])[None]
        window_to_crop = face.affine.to(torch.float64).clone()  # frame -> crop, from the window's origin
        window_to_crop[:, 2] += window_to_crop[:, :2] @ torch.tensor([x0, y0], dtype=torch.float64)
        layers[index] = warp_affine(source, window_to_crop[None], (crop_size, crop_size))[0]
    return layers[:, :3], layers[:, 3:]


def _check_inputs(images, faces, restored, parse_masks, targets) -> None:
    if images.ndim != 4 or images.shape[1] not in (1, 3, 4):
        raise FaceInputError(f"images must be [B,C,H,W] with C = 1, 3 or 4, got {tuple(images.shape)}")
    if restored.ndim != 4 or restored.shape[1] != 3 or restored.shape[-1] != restored.shape[-2]:
        raise FaceInputError(f"restored crops must be [N,3,S,S], got {tuple(restored.shape)}")
    if len(faces) != restored.shape[0]:
        raise FaceInputError(f"{len(faces)} faces but {restored.shape[0]} restored crops")
    if len(faces.image_sizes) != images.shape[0]:
        raise FaceInputError(f"faces were found in {len(faces.image_sizes)} frames but {images.shape[0]} images were given")
    if any(tuple(size) != tuple(images.shape[-2:]) for size in faces.image_sizes):
        raise FaceInputError(f"images of size {tuple(images.shape[-2:])} are not the frames the faces were found in")
    if any(face.affine is None for face in faces.faces):
        raise FaceInputError("faces have no alignment affine; run align_faces first")
    if parse_masks is not None and tuple(parse_masks.shape) != (len(faces), *restored.shape[-2:]):
        raise FaceInputError(f"parse masks must be [N,S,S] like the crops, got {tuple(parse_masks.shape)}")
    if targets is not None and (targets.ndim != 4 or targets.shape[:2] != images.shape[:2]):
        raise FaceInputError(f"targets {tuple(targets.shape)} do not match images {tuple(images.shape)} in batch or channels")


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
    """Blend ``restored`` crops (``[N,3,S,S]`` RGB 0..1, order of ``faces``) back into their frames.

    ``images`` ``[B,C,H,W]`` (C = 1, 3 or 4; alpha is kept) are the frames the faces were
    detected on; ``targets``, if given, are resized copies to paste into instead
    (e.g. after an upscaler; same batch and channels). ``mask="parsing"`` limits each
    face to its ``parse_masks`` ``[N,S,S]`` (see ``parse_face_masks``), taking the
    smaller of it and the feathered mask so no crop edge can show. ``blend`` scales the
    masks (0 = frames unchanged). Faces are warped on ``restored``'s device, only over
    their own windows; the result lives where the output frames do. Returns new frames
    and a ``[B,H',W']`` union mask of where faces were blended. Inputs are never modified.
    """
    check_paste_options(mask=mask, feather=feather, blend=blend)
    if mask == "parsing" and parse_masks is None:
        raise FaceInputError("mask='parsing' needs parse_masks (run a face parser on the restored crops)")
    _check_inputs(images, faces, restored, parse_masks if mask == "parsing" else None, targets)
    frames = images if targets is None else targets
    batch, channels, height, width = frames.shape
    color_channels = 1 if channels == 1 else 3
    output = frames.clone()
    union = torch.zeros(batch, height, width, dtype=frames.dtype, device=frames.device)
    if len(faces) == 0:
        return output, union

    device = restored.device
    crop_size = restored.shape[-1]
    masks = feathered_mask(crop_size, feather).to(device).expand(len(faces), crop_size, crop_size)
    if mask == "parsing":
        masks = torch.minimum(masks, parse_masks.to(device, masks.dtype).clamp(0, 1))
    crops = restored.float()
    if color_correction:
        originals, in_frame = _in_frame_crops(images, faces, crop_size, device)
        # Only pixels sampled wholly from inside the frame: partly covered ones mix the crops' border into
        # the statistics, which on a flat frame outweighs the face's own spread.
        crops = match_colors(crops, originals, masks[:, None] * (in_frame > 0.999))
    affines = crop_to_target_affines(faces, [(height, width)] * batch)
    gray_frames = {i: is_gray(output[i, :color_channels]) for i in {face.image_index for face in faces.faces}}

    for index, (face, affine) in enumerate(zip(faces.faces, affines)):
        window = _warped_window(affine, crop_size, height, width)
        if window is None:
            continue
        x0, y0, x1, y1 = window
        layers = torch.cat([crops[index], masks[index][None]])[None]
        # bicubic: the round trip frame -> crop -> frame stays sharp (bilinear both ways visibly softens)
        warped = warp_affine(
            layers, affine[None], (y1 - y0, x1 - x0), offsets=torch.tensor([[x0, y0]]), mode="bicubic"
        )[0].to(output.device, output.dtype)
        face_pixels, alpha = warped[:3].clamp(0, 1), warped[3:].clamp(0, 1) * blend
        if gray_frames[face.image_index]:
            face_pixels = to_gray(face_pixels, color_channels)
        window = output[face.image_index, :color_channels, y0:y1, x0:x1]
        output[face.image_index, :color_channels, y0:y1, x0:x1] = torch.lerp(window, face_pixels, alpha)
        union_window = union[face.image_index, y0:y1, x0:x1]
        union[face.image_index, y0:y1, x0:x1] = torch.maximum(union_window, alpha[0])
    return output, union
