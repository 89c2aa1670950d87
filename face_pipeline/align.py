"""Alignment to the FFHQ five-point template, and affine warps on the torch device.

Affines follow OpenCV's convention: a 2x3 matrix maps source pixel
coordinates (pixel centres at integers) to destination pixel coordinates.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F

from .faces import FaceBatch

# facexlib's FFHQ template for a 512 crop (left eye, right eye, nose, mouth left, mouth right).
FFHQ_TEMPLATE_512 = torch.tensor(
    [[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935], [201.26117, 371.41043], [313.08905, 371.15118]],
    dtype=torch.float64,
)
# Gray that fills crop pixels outside the frame (facexlib's BGR (135, 133, 132), here RGB 0..1).
CROP_BORDER_RGB = (132 / 255, 133 / 255, 135 / 255)


def estimate_similarity(points: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
    """Least-squares similarity transforms (rotation, uniform scale, translation) ``points -> template``.

    ``points``: ``[N,K,2]``; ``template``: ``[K,2]``; returns ``[N,2,3]`` (float64).
    """
    points = points.to(torch.float64)
    template = template.to(torch.float64)
    src_mean, dst_mean = points.mean(dim=1, keepdim=True), template.mean(dim=0)
    src, dst = points - src_mean, template - dst_mean
    # Closed form for z -> a z + b in complex numbers: a = sum(conj(src) dst) / sum(|src|^2).
    denominator = (src**2).sum(dim=(1, 2))
    a = (src[..., 0] * dst[..., 0] + src[..., 1] * dst[..., 1]).sum(dim=1) / denominator
    b = (src[..., 0] * dst[..., 1] - src[..., 1] * dst[..., 0]).sum(dim=1) / denominator
    rotation = torch.stack([torch.stack([a, -b], dim=-1), torch.stack([b, a], dim=-1)], dim=1)  # [N,2,2]
    translation = dst_mean - (rotation @ src_mean.transpose(1, 2)).squeeze(-1)
    return torch.cat([rotation, translation[..., None]], dim=2)


def invert_affine(affines: torch.Tensor) -> torch.Tensor:
    """Inverses of ``[N,2,3]`` affines."""
    linear_inverse = torch.linalg.inv(affines[:, :, :2])
    return torch.cat([linear_inverse, -(linear_inverse @ affines[:, :, 2:])], dim=2)


def warp_affine(
    images: torch.Tensor,
    affines: torch.Tensor,
    out_size: tuple[int, int],
    border_value: float | tuple[float, ...] = 0.0,
    offsets: torch.Tensor | None = None,
    mode: str = "bilinear",
) -> torch.Tensor:
    """Like ``cv2.warpAffine`` (constant border) for a batch, on the images' device.

    ``affines`` ``[N,2,3]`` map source pixels to destination pixels. ``offsets``
    ``[N,2]`` (x, y) makes the output a window of the destination starting there,
    so a small region of a large frame can be produced without warping it all.
    """
    count, channels, src_h, src_w = images.shape
    out_h, out_w = out_size
    device = images.device
    inverse = invert_affine(affines.to(torch.float64)).to(device)
    ys, xs = torch.meshgrid(
        torch.arange(out_h, device=device, dtype=torch.float64),
        torch.arange(out_w, device=device, dtype=torch.float64),
        indexing="ij",
    )
    grid = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).reshape(1, -1, 3).expand(count, -1, -1)
    if offsets is not None:
        shift = torch.zeros(count, 1, 3, device=device, dtype=torch.float64)
        shift[:, 0, :2] = offsets.to(device, torch.float64)
        grid = grid + shift
    source = grid @ inverse.transpose(1, 2)  # [N, H*W, 2] source pixel coordinates
    # pixel centres -> grid_sample's [-1, 1] (align_corners=False)
    normalised = torch.stack([(2 * source[..., 0] + 1) / src_w - 1, (2 * source[..., 1] + 1) / src_h - 1], dim=-1)
    normalised = normalised.view(count, out_h, out_w, 2).to(images.dtype)
    warped = F.grid_sample(images, normalised, mode=mode, padding_mode="zeros", align_corners=False)
    border = torch.as_tensor(border_value, dtype=images.dtype, device=device)
    if border.abs().max() == 0:
        return warped
    # Bilinear sampling is linear, so a constant border is the zero-padded warp plus the border
    # weighted by how much of each sample fell outside (exactly what cv2 computes).
    inside = F.grid_sample(
        torch.ones(count, 1, src_h, src_w, dtype=images.dtype, device=device), normalised,
        mode=mode, padding_mode="zeros", align_corners=False,
    )
    return warped + (1 - inside) * border.view(1, -1, 1, 1).expand(1, channels, 1, 1)


def align_faces(images: torch.Tensor, faces: FaceBatch, crop_size: int = 512) -> tuple[FaceBatch, torch.Tensor]:
    """Crop every face to the FFHQ template: returns faces with ``affine`` set and ``[N,3,S,S]`` crops."""
    if len(faces) == 0:
        empty = torch.zeros(0, images.shape[1], crop_size, crop_size, dtype=images.dtype, device=images.device)
        return FaceBatch([], list(faces.image_sizes), crop_size), empty
    landmarks = torch.stack([face.landmarks.as_tensor(torch.float64) for face in faces.faces])
    affines = estimate_similarity(landmarks, FFHQ_TEMPLATE_512 * (crop_size / 512))
    frame_index = torch.tensor([face.image_index for face in faces.faces], device=images.device)
    crops = warp_affine(
        images.index_select(0, frame_index), affines, (crop_size, crop_size), border_value=CROP_BORDER_RGB
    )
    aligned = [replace(face, affine=affine.float()) for face, affine in zip(faces.faces, affines)]
    return FaceBatch(aligned, list(faces.image_sizes), crop_size), crops
