"""YOLOv5-face (CodeFormer's yolov5l-face.pth / yolov5n-face.pth): which files they are, their config from
keys and shapes, letterboxing, decoding and NMS.

The numbers follow upstream's ``YoloDetector.detect_faces``: the frame is scaled so its long side is the
next multiple of 32 (bilinear), padded to a multiple of 64 on the short side with grey 114, RGB 0..1 in;
score = objectness x face class, ``score > threshold``, NMS at 0.5 IoU, coordinates mapped back and
clipped to the frame, boxes under 10 px tall dropped. Upstream rounds its output to whole pixels; this
keeps sub-pixel coordinates. Only the cells above the threshold are decoded.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from .inference import fold_batch_norms
from .interface import Detections, DetectorFamily, FaceDetector, FaceModelError, load_strictly, nms_per_image
from .yolov5face_net import OUTPUTS_PER_ANCHOR, TOPOLOGIES, YoloV5FaceNet

_PAD_GREY = 114 / 255
_MIN_FACE_HEIGHT = 10.0  # upstream's YoloDetector(min_face=10)
_STRIDE = 32
_SIZE_NAMES = {  # upstream's width of layer 0 (the stem) for each published csp size
    32: "s", 48: "m", 64: "l",
}


def _topology(state_dict: dict[str, torch.Tensor]) -> str | None:
    if "model.0.stem_1.conv.weight" not in state_dict:
        return None
    if "model.1.branch2.0.weight" in state_dict:
        return "shufflenet"
    if "model.1.cv1.conv.weight" in state_dict:
        return "csp"
    return None


def variant_from_keys(state_dict: dict[str, torch.Tensor]) -> str | None:
    """``"n"``, ``"s"``, ``"m"``, ``"l"`` (or ``"csp-<w>"`` / ``"n-<w>"`` for other widths); None for other files."""
    topology = _topology(state_dict)
    if topology is None:
        return None
    stem = state_dict["model.0.stem_1.conv.weight"].shape[0]
    if topology == "shufflenet":
        return "n" if stem == 32 else f"n-{stem}"
    return _SIZE_NAMES.get(stem, f"csp-{stem}")


# The weight whose output channels are a block's width.
_WIDTH_KEYS = {"stem": "stem_1.conv.weight", "conv1": "conv.weight", "conv3s2": "conv.weight", "c3": "cv3.conv.weight",
               "c3_plain": "cv3.conv.weight", "spp": "cv2.conv.weight"}


def _width(state_dict: dict[str, torch.Tensor], index: int, kind: str) -> int:
    """Layer ``index``'s output channels (0 for layers without weights: upsampling, concatenation)."""
    prefix = f"model.{index}."
    if kind.startswith("shuffle"):  # a ShuffleV2 unit's output is its two branches (or the kept half and one branch)
        branch = next(k for k in state_dict if re.fullmatch(rf"{re.escape(prefix)}(\d+\.)?branch2\.0\.weight", k))
        return 2 * state_dict[branch].shape[0]
    return state_dict[prefix + _WIDTH_KEYS[kind]].shape[0] if kind in _WIDTH_KEYS else 0


def config_from_keys(state_dict: dict[str, torch.Tensor]) -> tuple[str, list[int], list[int], list[bool], torch.Tensor]:
    """Topology, per-layer widths, depths, nesting and the anchors (grid units) of a YOLOv5-face state dict."""
    topology = _topology(state_dict)
    rows = TOPOLOGIES[topology]
    widths, depths, nested = [], [], []
    for index, (_, kind) in enumerate(rows):
        widths.append(_width(state_dict, index, kind))
        prefix = f"model.{index}."
        if kind in ("c3", "c3_plain"):
            units = {k[len(prefix) + 2 :].split(".")[0] for k in state_dict if k.startswith(prefix + "m.")}
            depths.append(len(units))
            nested.append(False)
        elif kind == "shuffle1":
            units = {k[len(prefix):].split(".")[0] for k in state_dict if re.match(rf"{re.escape(prefix)}\d+\.", k)}
            depths.append(max(1, len(units)))
            nested.append(bool(units))
        else:
            depths.append(0)
            nested.append(False)
    anchors = state_dict[f"model.{len(rows)}.anchors"]
    return topology, widths, depths, nested, anchors


def letterbox_geometry(height: int, width: int) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """Upstream's letterbox for a frame: the scaled size ``(h, w)`` and the padding ``(top, bottom, left, right)``."""
    side = math.ceil(max(height, width) / _STRIDE) * _STRIDE
    ratio = side / max(height, width)
    new_h, new_w = int(round(height * ratio)), int(round(width * ratio))
    pad_h, pad_w = (side - new_h) % 64 / 2, (side - new_w) % 64 / 2
    return (new_h, new_w), (int(round(pad_h - 0.1)), int(round(pad_h + 0.1)), int(round(pad_w - 0.1)), int(round(pad_w + 0.1)))


def letterbox(images: torch.Tensor) -> tuple[torch.Tensor, float, tuple[float, float]]:
    """Scaled and padded ``images`` as upstream feeds them, with the scale and the (x, y) padding to undo."""
    height, width = images.shape[-2:]
    (new_h, new_w), (top, bottom, left, right) = letterbox_geometry(height, width)
    if (new_h, new_w) != (height, width):
        images = F.interpolate(images, size=(new_h, new_w), mode="bilinear", align_corners=False)
    images = F.pad(images, (left, right, top, bottom), value=_PAD_GREY)
    # upstream undoes the letterbox from the padded and the original shapes (its scale_coords)
    padded_h, padded_w = images.shape[-2:]
    gain = min(padded_h / height, padded_w / width)
    return images, gain, ((padded_w - width * gain) / 2, (padded_h - height * gain) / 2)


class YoloFaceDetector(FaceDetector):
    """A loaded YOLOv5-face: the network (eval mode, no gradients, BatchNorms folded), its size and file."""

    def __init__(self, network: YoloV5FaceNet, variant: str, path: Path | None = None, optimise: bool = True):
        """``optimise=False`` keeps upstream's exact computation (the reference the fast one is tested against)."""
        self.family, self.variant, self.path, self.optimised = YOLOV5_FACE, variant, path, optimise
        self.network = network.eval().requires_grad_(False)
        if optimise:
            self.network = fold_batch_norms(self.network).to(memory_format=torch.channels_last)

    def raw_outputs(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The head maps ``[B, anchors, H/s, W/s, 16]`` per stride for letterboxed RGB 0..1 ``images``."""
        maps = self.network(images.contiguous(memory_format=torch.channels_last) if self.optimised else images)
        anchors = self.network.model[-1].anchors.shape[1]
        return [m.float().view(m.shape[0], anchors, OUTPUTS_PER_ANCHOR, *m.shape[2:]).permute(0, 1, 3, 4, 2) for m in maps]

    def _detect(self, images: torch.Tensor, threshold: float, nms_threshold: float) -> Detections:
        height, width = images.shape[-2:]
        boxed, gain, (pad_x, pad_y) = letterbox(images.to(next(self.network.parameters()).dtype))
        anchor_grid = self.network.model[-1].anchor_grid.float()  # [levels, 1, anchors, 1, 1, 2] pixels
        found = []
        for level, (raw, stride) in enumerate(zip(self.raw_outputs(boxed), self.network.strides)):
            score = torch.sigmoid(raw[..., 4]) * torch.sigmoid(raw[..., 15])
            frame, anchor, row, col = torch.nonzero(score > threshold, as_tuple=True)
            cells = raw[frame, anchor, row, col]
            size = anchor_grid[level, 0, anchor, 0, 0]  # [n,2] anchor w, h in pixels
            cell = torch.stack([col, row], dim=1).to(cells.dtype)
            center = (torch.sigmoid(cells[:, 0:2]) * 2 - 0.5 + cell) * stride
            wh = (torch.sigmoid(cells[:, 2:4]) * 2) ** 2 * size
            points = cells[:, 5:15].view(-1, 5, 2) * size[:, None] + cell[:, None] * stride
            found.append((frame, torch.cat([center - wh / 2, center + wh / 2], dim=1), score[frame, anchor, row, col], points))
        frame, boxes, scores, points = (torch.cat(parts) for parts in zip(*found))
        keep = nms_per_image(boxes, scores, frame, nms_threshold)
        frame, boxes, scores, points = frame[keep], boxes[keep], scores[keep], points[keep]
        offset = torch.tensor([pad_x, pad_y], device=boxes.device)
        limit = torch.tensor([width, height], device=boxes.device, dtype=boxes.dtype)
        boxes = torch.minimum(((boxes.view(-1, 2, 2) - offset) / gain).clamp(min=0), limit).view(-1, 4)
        points = torch.minimum(((points - offset) / gain).clamp(min=0), limit)
        tall = boxes[:, 3] - boxes[:, 1] >= _MIN_FACE_HEIGHT
        return Detections(frame[tall], boxes[tall], scores[tall], points[tall])


def load_yolov5face(state_dict: dict[str, torch.Tensor], variant: str, path: Path | None) -> YoloFaceDetector:
    """A YOLOv5-face with its config read from ``state_dict``'s keys and shapes, loaded strictly."""
    try:
        network = YoloV5FaceNet(*config_from_keys(state_dict))
    except (KeyError, IndexError, StopIteration, RuntimeError, ValueError) as error:
        raise FaceModelError(f"{path}: a YOLOv5-face file with missing or odd tensors ({error})") from None
    return YoloFaceDetector(load_strictly(network, state_dict, path, f"YOLOv5-face {variant}"), variant, path)


YOLOV5_FACE = DetectorFamily(
    name="YOLOv5-face",
    variant=variant_from_keys,
    load=load_yolov5face,
    default_threshold=0.7,  # upstream's YoloDetector.detect_faces default
    facelib_threshold=0.7,
    nms_threshold=0.5,
    files=("yolov5l-face.pth", "yolov5n-face.pth"),
    licence="GPL-3.0 code (deepcam-cn/yolov5-face); the weights of CodeFormer's release: NTU S-Lab License 1.0, "
            "non-commercial",
)
