"""Face records: what detection finds and what alignment and paste-back consume."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
"""A detector's five points (RetinaFace's and YOLOv5-face's order), named as they appear in the image (left = smaller x)."""


@dataclass(frozen=True)
class Landmarks:
    """Five facial landmarks in source-image pixel coordinates (x, y)."""

    left_eye: tuple[float, float]
    right_eye: tuple[float, float]
    nose: tuple[float, float]
    mouth_left: tuple[float, float]
    mouth_right: tuple[float, float]

    @classmethod
    def from_tensor(cls, points: torch.Tensor) -> "Landmarks":
        """Build from a ``[5, 2]`` tensor in ``LANDMARK_NAMES`` order."""
        rows = [(float(x), float(y)) for x, y in points.reshape(5, 2).tolist()]
        return cls(*rows)

    def as_tensor(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``[5, 2]`` tensor in ``LANDMARK_NAMES`` order."""
        return torch.tensor([getattr(self, name) for name in LANDMARK_NAMES], dtype=dtype)


@dataclass(frozen=True)
class FaceRecord:
    """One detected face.

    ``affine`` is the 2x3 similarity transform that maps source-image pixel
    coordinates to aligned-crop pixel coordinates (``crop_size`` square), the
    same convention as ``cv2.warpAffine``'s matrix. It is ``None`` until
    alignment has been estimated.
    """

    image_index: int
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in source pixels
    score: float
    landmarks: Landmarks
    affine: torch.Tensor | None = None

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


def offset_faces(faces: list[FaceRecord], start: int) -> list[FaceRecord]:
    """``faces`` of a slice of frames that begins at batch index ``start``, re-indexed into the whole batch."""
    return [replace(face, image_index=face.image_index + start) for face in faces]


@dataclass
class FaceBatch:
    """Every face found in a batch of frames, in a stable order.

    Faces are sorted by ``image_index`` and, within a frame, in the order the
    selection kept them; crops produced by alignment follow the same order, so
    ``faces[i]`` belongs to ``crops[i]``. ``image_sizes`` holds ``(height,
    width)`` of each frame the faces were detected on, which lets paste-back
    target an upscaled copy of the frame.
    """

    faces: list[FaceRecord] = field(default_factory=list)
    image_sizes: list[tuple[int, int]] = field(default_factory=list)
    crop_size: int = 512

    def __len__(self) -> int:
        return len(self.faces)

    def faces_in_image(self, image_index: int) -> list[int]:
        """Indices into ``faces`` of the faces found in one frame."""
        return [i for i, face in enumerate(self.faces) if face.image_index == image_index]
