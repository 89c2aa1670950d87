"""Alignment to the FFHQ five-point template, and affine warps on the torch device.

Affines follow OpenCV's convention: a 2x3 matrix maps source pixel
coordinates (pixel centres at integers) to destination pixel coordinates.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F

from .errors import FaceInputError
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
    template = template.to(points.device, torch.float64)
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
    """Inverses of ``[N,2,3]`` affines (as ``cv2.invertAffineTransform``, batched)."""
    linear_inverse = torch.linalg.inv(affines[:, :, :2])
    return torch.cat([linear_inverse, -(linear_inverse @ affines[:, :, 2:])], dim=2)


def _homogeneous(matrices: torch.Tensor) -> torch.Tensor:
    """``[N,2,3]`` -> ``[N,3,3]``."""
    bottom = torch.tensor([0.0, 0.0, 1.0], dtype=matrices.dtype).expand(matrices.shape[0], 1, 3)
    return torch.cat([matrices, bottom], dim=1)


def _sampling_theta(affines: torch.Tensor, source_size, out_size, offsets: torch.Tensor | None) -> torch.Tensor:
    """``affine_grid``'s theta: normalised output coordinates -> normalised source coordinates (float64, CPU)."""
    (src_h, src_w), (out_h, out_w) = source_size, out_size
    count = affines.shape[0]
    shift = torch.zeros(count, 2, dtype=torch.float64) if offsets is None else offsets.detach().cpu().double()
    # normalised output (align_corners=False) -> output pixel, shifted to the window's origin
    from_output = torch.zeros(count, 2, 3, dtype=torch.float64)
    from_output[:, 0, 0], from_output[:, 1, 1] = out_w / 2, out_h / 2
    from_output[:, :, 2] = torch.tensor([(out_w - 1) / 2, (out_h - 1) / 2], dtype=torch.float64) + shift
    # source pixel -> normalised source
    to_source = torch.tensor([[[2 / src_w, 0.0, 1 / src_w - 1], [0.0, 2 / src_h, 1 / src_h - 1]]], dtype=torch.float64)
    dst_to_src = invert_affine(affines.detach().cpu().double())
    return (_homogeneous(to_source.expand(count, -1, -1)) @ _homogeneous(dst_to_src) @ _homogeneous(from_output))[:, :2]


def warp_affine(
    images: torch.Tensor,
    affines: torch.Tensor,
    out_size: tuple[int, int],
    border_value: float | tuple[float, ...] = 0.0,
    offsets: torch.Tensor | None = None,
    mode: str = "bilinear",
) -> torch.Tensor:
    """Like ``cv2.warpAffine`` with a constant border, for a batch, on the images' device.

    ``images`` ``[N,C,H,W]``, or ``[1,C,H,W]`` to cut all ``N`` outputs from one
    image (without copying it). ``affines`` ``[N,2,3]`` map source pixels to
    destination pixels. ``offsets`` ``[N,2]`` (x, y) makes each output the window
    of the destination that starts there, so a small region of a large frame is
    produced without warping it all. ``mode``: grid_sample's bilinear, bicubic or
    nearest. Returns ``[N,C,out_h,out_w]`` in the images' dtype.
    """
    if images.ndim != 4 or affines.ndim != 3 or affines.shape[1:] != (2, 3):
        raise FaceInputError(f"warp_affine expects [N,C,H,W] images and [N,2,3] affines, got "
                             f"{tuple(images.shape)} and {tuple(affines.shape)}")
    count, (out_h, out_w) = affines.shape[0], out_size
    if images.shape[0] not in (1, count):
        raise FaceInputError(f"warp_affine got {images.shape[0]} images for {count} affines")
    channels, src_h, src_w = images.shape[1:]
    device = images.device
    # Sampling positions in float32 at least: half precision cannot address pixels of a large frame.
    work_dtype = torch.promote_types(images.dtype, torch.float32)
    theta = _sampling_theta(affines, (src_h, src_w), (out_h, out_w), offsets).to(device, work_dtype)
    grid = F.affine_grid(theta, [count, 1, out_h, out_w], align_corners=False)
    source = images.to(work_dtype).expand(count, -1, -1, -1)
    warped = F.grid_sample(source, grid, mode=mode, padding_mode="zeros", align_corners=False)
    border = torch.as_tensor(border_value, dtype=work_dtype, device=device).reshape(-1)
    if bool((border != 0).any()):
        # Sampling is linear, so a constant border is the zero-padded warp plus the border weighted by
        # how much of each sample fell outside the image (what cv2 computes).
        ones = torch.ones(1, 1, 1, 1, dtype=work_dtype, device=device).expand(count, 1, src_h, src_w)
        inside = F.grid_sample(ones, grid, mode=mode, padding_mode="zeros", align_corners=False)
        warped = warped + (1 - inside) * border.view(1, -1, 1, 1).expand(1, channels, 1, 1)
    return warped.to(images.dtype)


def align_faces(images: torch.Tensor, faces: FaceBatch, crop_size: int = 512) -> tuple[FaceBatch, torch.Tensor]:
    """Crop every face to the FFHQ template: returns faces with ``affine`` set and ``[N,3,S,S]`` crops.

    ``images`` are the ``[B,3,H,W]`` frames the faces were found in; crops are
    made on their device, the faces of one frame in one warp. Outside the frame
    the crops are facexlib's gray. ``affine`` maps frame pixels to crop pixels.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise FaceInputError(f"align_faces expects [B,3,H,W] RGB images, got {tuple(images.shape)}")
    if len(faces.image_sizes) != images.shape[0] or any(tuple(s) != tuple(images.shape[-2:]) for s in faces.image_sizes):
        raise FaceInputError(f"the faces were found in {len(faces.image_sizes)} frames of sizes {faces.image_sizes}, "
                             f"not in these images {tuple(images.shape)}")
    if crop_size < 16:
        raise FaceInputError(f"crop_size must be at least 16, got {crop_size}")
    if len(faces) == 0:
        empty = torch.empty(0, 3, crop_size, crop_size, dtype=images.dtype, device=images.device)
        return FaceBatch([], list(faces.image_sizes), crop_size), empty
    landmarks = torch.stack([face.landmarks.as_tensor(torch.float64) for face in faces.faces])
    affines = estimate_similarity(landmarks, FFHQ_TEMPLATE_512 * (crop_size / 512))
    crops = crop_faces(images, faces, affines, crop_size, border_value=CROP_BORDER_RGB)
    aligned = [replace(face, affine=affine.float()) for face, affine in zip(faces.faces, affines)]
    return FaceBatch(aligned, list(faces.image_sizes), crop_size), crops


def crop_faces(
    images: torch.Tensor,
    faces: FaceBatch,
    affines: torch.Tensor,
    crop_size: int,
    border_value: float | tuple[float, ...] = 0.0,
    device: torch.device | None = None,
) -> torch.Tensor:
    """``[N,C,S,S]`` crops of ``images`` ``[B,C,H,W]`` through ``affines`` ``[N,2,3]`` (frame -> crop), in face order.

    All faces of a frame come out of one warp; each frame moves to ``device``
    (default: where it is) once, and the result lives there.
    """
    device = images.device if device is None else device
    crops = torch.empty(len(faces), images.shape[1], crop_size, crop_size, dtype=images.dtype, device=device)
    for frame_index in sorted({face.image_index for face in faces.faces}):
        rows = faces.faces_in_image(frame_index)
        frame = images[frame_index : frame_index + 1].to(device)
        crops[rows] = warp_affine(frame, affines[rows], (crop_size, crop_size), border_value=border_value)
    return crops


def as_rgb(frames: torch.Tensor) -> torch.Tensor:
    """The RGB view of ``[B,C,H,W]`` frames: gray repeated, alpha left out (no copy)."""
    return frames.expand(-1, 3, -1, -1) if frames.shape[1] == 1 else frames[:, :3]
