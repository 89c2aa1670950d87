"""Face parsing masks with facexlib's ParseNet or BiSeNet (weights from a local file only)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..model_files import state_dict_mismatch
from .detect import FaceModelError, read_weights
from .errors import FaceInputError
from .paste import gaussian_blur

# Which of the 19 classes count as face, in each network's label order. ParseNet's is
# facexlib's MASK_COLORMAP: face = skin, nose, glasses, eyes, brows, ears, mouth, lips, hair,
# earrings; not background, hat, necklace, neck or cloth.
# ParseNet: background skin nose eye_g l_eye r_eye l_brow r_brow l_ear r_ear mouth u_lip l_lip hair hat ear_r neck_l neck cloth
# BiSeNet:  background skin l_brow r_brow l_eye r_eye eye_g l_ear r_ear ear_r nose mouth u_lip l_lip neck neck_l cloth hair hat
FACE_CLASSES = {
    "parsenet": (0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 0),
    "bisenet": (0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0),
}
# Input normalisation each network was trained with (RGB mean, std on 0..1 pixels).
_NORMALIZATION = {
    "parsenet": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "bisenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
_EDGE = 10  # facexlib clears this many pixels at the crop border


@dataclass
class FaceParser:
    network: torch.nn.Module
    kind: str = "parsenet"  # "parsenet" or "bisenet"
    path: Path | None = None


def _build(kind: str) -> torch.nn.Module:
    if kind == "bisenet":
        from facexlib.parsing.bisenet import BiSeNet

        return BiSeNet(num_class=19)
    from facexlib.parsing.parsenet import ParseNet

    return ParseNet(in_size=512, out_size=512, parsing_ch=19)


def load_parser(path: str | Path, device: str | torch.device = "cpu") -> FaceParser:
    """Build facexlib's ParseNet (parsing_parsenet.pth) or BiSeNet (parsing_bisenet.pth), chosen by
    the file's keys, and load its local weights strictly. Nothing is downloaded."""
    path = Path(path)
    state_dict = {key.removeprefix("module."): value for key, value in read_weights(path).items()}
    kind = "bisenet" if any(key.startswith("cp.resnet.") for key in state_dict) else "parsenet"
    network = _build(kind)
    mismatch = state_dict_mismatch(network, state_dict)
    if mismatch:
        raise FaceModelError(
            f"{path}: not face-parsing weights (expected facexlib's parsing_parsenet.pth or parsing_bisenet.pth "
            f"layout; read as {kind}): {mismatch}"
        )
    network.load_state_dict(state_dict, strict=True)
    return FaceParser(network.eval().requires_grad_(False).to(device), kind, path)


@torch.inference_mode()
def parse_face_masks(parser: FaceParser, crops: torch.Tensor, chunk_size: int = 8) -> torch.Tensor:
    """Soft face masks ``[N,S,S]`` in 0..1 for aligned crops ``[N,3,S,S]`` (RGB 0..1), as facexlib builds them.

    Per crop: parse at 512x512, face classes -> 1, blur twice (101 px kernel,
    sigma 11), clear a 10 px border, resize back to the crop size. Returned on
    the crops' device.
    """
    if crops.ndim != 4 or crops.shape[1] != 3 or crops.shape[-1] != crops.shape[-2]:
        raise FaceInputError(f"expected face crops [N,3,S,S], got {tuple(crops.shape)}")
    device = next(parser.network.parameters()).device
    size = crops.shape[-1]
    lookup = torch.tensor(FACE_CLASSES[parser.kind], dtype=torch.float32, device=device)
    mean, std = (torch.tensor(v, device=device).view(1, 3, 1, 1) for v in _NORMALIZATION[parser.kind])
    masks = []
    for start in range(0, crops.shape[0], max(1, chunk_size)):
        x = crops[start : start + chunk_size].to(device, torch.float32)
        if size != 512:
            x = F.interpolate(x, size=(512, 512), mode="bilinear", align_corners=False)
        logits = parser.network((x - mean) / std)[0]
        mask = lookup[logits.argmax(dim=1)][:, None]
        for _ in range(2):
            mask = gaussian_blur(mask, 11.0, radius=50, border="reflect")
        mask = F.pad(mask[..., _EDGE:-_EDGE, _EDGE:-_EDGE], (_EDGE, _EDGE, _EDGE, _EDGE))
        if size != 512:
            mask = F.interpolate(mask, size=(size, size), mode="bilinear", align_corners=False)
        masks.append(mask[:, 0].clamp(0, 1).to(crops.device))
    return torch.cat(masks) if masks else crops.new_zeros(0, size, size)
