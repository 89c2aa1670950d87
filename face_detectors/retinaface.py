"""RetinaFace (facexlib's detection_*_Final.pth files): which files are RetinaFace, pre- and post-processing.

The numbers follow facexlib's ``RetinaFace.detect_faces``: BGR 0..255 input minus the training means,
anchors of 16..512 px on strides 8, 16, 32, variances (0.1, 0.2), ``score > threshold``, NMS at 0.4 IoU
in the pixels of the image the network saw. Anchors are generated vectorised and cached per input size;
only the anchors above the threshold are decoded. The optimised network runs with its BatchNorms folded,
the means folded into its first convolution, channels-last; on the CPU its stride-2..8 stem in cache-sized
strips (``inference.py``) and its stride-8 FPN/SSH level in strips too (``RetinaFaceNet.feature_pieces``):
the same numbers, faster.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import torch

from .inference import CentredInputConv, fold_batch_norms, receptive_radius, run_in_strips
from .interface import Detections, DetectorFamily, FaceDetector, load_strictly, nms_per_image
from .retinaface_net import RetinaFaceNet

# BGR channel means the RetinaFace weights were trained with, on 0..255 pixels.
_BGR_MEAN = (104.0, 117.0, 123.0)
_MIN_SIZES = ((16, 32), (64, 128), (256, 512))
_STEPS = (8, 16, 32)
_VARIANCE = (0.1, 0.2)
# Stride-8 cells per strip of the FPN/SSH's level 0 on the CPU (all frames of a call): each 64-channel map of a
# strip ~8 MB, in the cache, and under glibc's 32 MB threshold, above which every new map is fresh memory that
# the kernel must fault in (measured at 4K: 8100 page faults a whole map).
_FINE_STRIP_CELLS = 1 << 15
# A key only that backbone's checkpoints have.
_BACKBONE_KEYS = {"mobilenet0.25": "body.stage1.0.0.weight", "resnet50": "body.layer1.0.conv1.weight"}


def backbone_from_keys(state_dict: dict[str, torch.Tensor]) -> str | None:
    """``"mobilenet0.25"`` or ``"resnet50"`` from the keys only that backbone has; None for other files."""
    return next((backbone for backbone, key in _BACKBONE_KEYS.items() if key in state_dict), None)


def _grids(height: int, width: int) -> list[tuple[int, int]]:
    """Each level's (rows, cols) of anchor cells for a ``height`` x ``width`` input, levels by stride."""
    return [(math.ceil(height / step), math.ceil(width / step)) for step in _STEPS]


@lru_cache(maxsize=16)
def _priors(height: int, width: int) -> torch.Tensor:
    """Anchor boxes (cx, cy, w, h), normalised, in the order the heads emit them (CPU, float32)."""
    per_level = []
    for step, sizes, (rows, cols) in zip(_STEPS, _MIN_SIZES, _grids(height, width)):
        cy, cx = torch.meshgrid(
            (torch.arange(rows, dtype=torch.float64) + 0.5) * step / height,
            (torch.arange(cols, dtype=torch.float64) + 0.5) * step / width,
            indexing="ij",
        )
        anchors = [
            torch.stack([cx, cy, torch.full_like(cx, s / width), torch.full_like(cy, s / height)], dim=-1)
            for s in sizes
        ]
        per_level.append(torch.stack(anchors, dim=2).reshape(-1, 4))  # rows, cols, anchor -> flat
    return torch.cat(per_level).float()


def to_network_input(images: torch.Tensor) -> torch.Tensor:
    """RGB 0..1 -> BGR 0..255 minus the training means: what facexlib's network takes."""
    mean = torch.tensor(_BGR_MEAN, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return images.flip(1) * 255.0 - mean


@torch.no_grad()
def _take_rgb_input(network: RetinaFaceNet) -> RetinaFaceNet:
    """Make the network take RGB 0..1 frames as they come: the first convolution's weights flipped to RGB order
    and scaled by 255, and the training means folded into it (``CentredInputConv``): the same product, with no
    pass over the frame before it."""
    parent, name, first = next((parent, name, child) for parent in network.body.modules()
                               for name, child in parent.named_children() if isinstance(child, torch.nn.Conv2d))
    first.weight.copy_(first.weight.flip(1) * 255.0)
    setattr(parent, name, CentredInputConv(first, torch.tensor(_BGR_MEAN[::-1]) / 255.0))
    return network


class RetinaFaceDetector(FaceDetector):
    """A loaded RetinaFace: the network (eval mode, no gradients, BatchNorms folded, taking RGB 0..1), its
    backbone and file."""

    def __init__(self, network: RetinaFaceNet, backbone: str, path: Path | None = None, optimise: bool = True):
        """``optimise=False`` keeps facexlib's exact computation (the reference the fast one is tested against)."""
        self.family, self.variant, self.path, self.optimised = RETINAFACE, backbone, path, optimise
        self.network = network.eval().requires_grad_(False)
        if optimise:
            self.network = _take_rgb_input(fold_batch_norms(self.network)).to(memory_format=torch.channels_last)
        self._stem_radius = receptive_radius(self.network.stem())

    @property
    def backbone(self) -> str:
        return self.variant

    def _feature_pieces(self, images: torch.Tensor) -> Iterator[tuple[int, int, torch.Tensor]]:
        """``RetinaFaceNet.feature_pieces`` of ``images``: on the CPU the stem and the stride-8 level in strips."""
        network, fine_rows = self.network, None
        if not self.optimised:
            return network.feature_pieces(network.levels(to_network_input(images)))
        images = images.contiguous(memory_format=torch.channels_last)  # as the network's weights are
        if images.device.type != "cpu":  # on a GPU the whole-image pass is not memory-bound the same way
            levels = network.levels(images)
        else:
            stem_output = run_in_strips(network.run_stem, images, _STEPS[0], self._stem_radius)
            levels = network.levels(None, stem_output)
            batch, _, _, cols = levels[0].shape
            fine_rows = _FINE_STRIP_CELLS // (batch * cols)
        return network.feature_pieces(levels, fine_rows)

    def _detect(self, images: torch.Tensor, threshold: float, nms_threshold: float) -> Detections:
        net_h, net_w = images.shape[-2:]
        # anchors before each level's (``_priors``' order: level 0's row-major, 2 per cell, then 1's, then 2's)
        per_level = [rows * cols * len(sizes) for (rows, cols), sizes in zip(_grids(net_h, net_w), _MIN_SIZES)]
        level_start = [sum(per_level[:level]) for level in range(len(per_level))]
        # The class head runs everywhere; the box and landmark heads (1x1 convolutions) only at the anchors
        # above the threshold, as matrix products on those cells' features.
        found, network = [], self.network
        for level, first_row, features in self._feature_pieces(images):
            classes, boxes, marks = network.ClassHead[level], network.BboxHead[level], network.LandmarkHead[level]
            logits = classes.conv1x1(features).float()
            cols = logits.shape[3]
            # softmax over (background, face) per anchor = sigmoid of the logits' difference
            scores = torch.sigmoid(logits[:, 1::2] - logits[:, 0::2]).permute(0, 2, 3, 1)  # [B, rows, cols, anchors]
            frame, row, col, k = torch.nonzero(scores > threshold, as_tuple=True)
            at = features[frame, :, row, col].float()  # [n, C]
            per_cell = scores.shape[-1]
            anchor = level_start[level] + ((row + first_row) * cols + col) * per_cell + k
            found.append((frame, anchor, scores[frame, row, col, k],
                          _head_at(boxes.conv1x1, at, k, per_cell), _head_at(marks.conv1x1, at, k, per_cell)))
        frame, anchor, scores, loc, landmarks = (torch.cat(parts) for parts in zip(*found))
        prior, landmarks = _priors(net_h, net_w).to(loc.device)[anchor], landmarks.view(-1, 5, 2)
        centers = prior[:, :2] + loc[:, :2] * _VARIANCE[0] * prior[:, 2:]
        sizes = prior[:, 2:] * torch.exp(loc[:, 2:] * _VARIANCE[1])
        points = prior[:, None, :2] + landmarks * _VARIANCE[0] * prior[:, None, 2:]
        # normalised -> the pixels of the image the network saw, where facexlib runs its NMS
        scale = torch.tensor([net_w, net_h], device=loc.device, dtype=torch.float32)
        boxes = torch.cat([centers - sizes / 2, centers + sizes / 2], dim=1) * scale.repeat(2)
        keep = nms_per_image(boxes, scores, frame, nms_threshold)
        return Detections(frame[keep], boxes[keep], scores[keep], points[keep] * scale)


def _head_at(conv: torch.nn.Conv2d, cells: torch.Tensor, anchor: torch.Tensor, per_cell: int) -> torch.Tensor:
    """A 1x1 head's output for anchor ``anchor`` of each cell: ``[n, outputs per anchor]``."""
    weight = conv.weight.float().flatten(1)  # [per_cell * k, C]
    out = torch.addmm(conv.bias.float(), cells, weight.t()).view(len(cells), per_cell, len(weight) // per_cell)
    return out[torch.arange(len(cells), device=cells.device), anchor]


def load_retinaface(state_dict: dict[str, torch.Tensor], backbone: str, path: Path | None) -> RetinaFaceDetector:
    """A RetinaFace of ``backbone`` with ``state_dict`` loaded strictly."""
    network = load_strictly(RetinaFaceNet(backbone), state_dict, path, f"RetinaFace {backbone}")
    return RetinaFaceDetector(network, backbone, path)


RETINAFACE = DetectorFamily(
    name="RetinaFace",
    variant=backbone_from_keys,
    load=load_retinaface,
    default_threshold=0.97,  # GFPGANer's
    facelib_threshold=0.8,  # facexlib's detect_faces default, which FaceRestoreHelper keeps
    nms_threshold=0.4,
    files=("detection_mobilenet0.25_Final.pth", "detection_Resnet50_Final.pth"),
    licence="MIT (biubug6/Pytorch_Retinaface weights, as facexlib ships them)",
)
