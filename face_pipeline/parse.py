"""Face parsing masks with facexlib's ParseNet (weights from a local file only)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .detect import FaceModelError, _read_weights
from .paste import _gaussian_blur

# Which of ParseNet's 19 classes count as face (facexlib's MASK_COLORMAP): skin, brows, eyes, nose,
# mouth, lips, ears... but not background (0), neck (14), cloth (16), hair (17) or hat (18).
FACE_CLASSES = (0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 0)


@dataclass
class FaceParser:
    network: torch.nn.Module
    path: Path | None = None


def load_parser(path: str | Path, device: str | torch.device = "cpu") -> FaceParser:
    """Build facexlib's ParseNet and load local weights (e.g. parsing_parsenet.pth), strictly."""
    from facexlib.parsing.parsenet import ParseNet

    path = Path(path)
    state_dict = _read_weights(path)
    network = ParseNet(in_size=512, out_size=512, parsing_ch=19)
    try:
        network.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise FaceModelError(f"{path}: not ParseNet face-parsing weights (parsing_parsenet.pth layout): {error}") from error
    return FaceParser(network.eval().requires_grad_(False).to(device), path)


@torch.inference_mode()
def parse_face_masks(parser: FaceParser, crops: torch.Tensor, chunk_size: int = 8) -> torch.Tensor:
    """Soft face masks ``[N,S,S]`` in 0..1 for aligned crops ``[N,3,S,S]`` (RGB 0..1), as facexlib builds them."""
    device = next(parser.network.parameters()).device
    size = crops.shape[-1]
    masks = []
    for start in range(0, crops.shape[0], chunk_size):
        x = crops[start : start + chunk_size].to(device, torch.float32)
        if size != 512:
            x = F.interpolate(x, size=(512, 512), mode="bilinear", align_corners=False)
        logits = parser.network(x * 2 - 1)[0]
        lookup = torch.tensor(FACE_CLASSES, dtype=torch.float32, device=device)
        mask = lookup[logits.argmax(dim=1)][:, None]
        mask = _gaussian_blur(_gaussian_blur(mask, 11.0), 11.0)  # facexlib: two 101 px, sigma 11 blurs
        edge = 10
        mask[..., :edge, :] = 0
        mask[..., -edge:, :] = 0
        mask[..., :, :edge] = 0
        mask[..., :, -edge:] = 0
        if size != 512:
            mask = F.interpolate(mask, size=(size, size), mode="bilinear", align_corners=False)
        masks.append(mask[:, 0].to(crops.device))
    return torch.cat(masks) if masks else crops.new_zeros(0, size, size)
