"""Detection previews: boxes, scores and landmarks drawn on copies of the frames."""

from __future__ import annotations

import numpy as np
import torch

from .faces import LANDMARK_NAMES, FaceBatch

_POINT_COLORS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 0, 255), (0, 255, 255))


def draw_faces(images: torch.Tensor, faces: FaceBatch) -> torch.Tensor:
    """``[B,3,H,W]`` RGB 0..1 frames with every face's box, score and five landmarks drawn."""
    import cv2

    # clamp before the cast: uint8 wraps out-of-range values around (1.02 would become near black)
    pixels = images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
    canvases = [np.ascontiguousarray(frame.numpy()) for frame in pixels]
    for face in faces.faces:
        canvas = canvases[face.image_index]
        thickness = max(1, round(max(canvas.shape[:2]) / 400))
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 255, 0), thickness)
        cv2.putText(canvas, f"{face.score:.3f}", (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * thickness, (0, 255, 0), thickness)
        for name, color in zip(LANDMARK_NAMES, _POINT_COLORS):
            x, y = getattr(face.landmarks, name)
            cv2.circle(canvas, (int(round(x)), int(round(y))), 2 * thickness, color, -1)
    return torch.stack([torch.from_numpy(c).permute(2, 0, 1).float() / 255 for c in canvases])
