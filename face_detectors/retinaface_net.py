"""facexlib's RetinaFace network, assembled from facexlib's layers (pre/post-processing lives in ``retinaface.py``).

facexlib's own ``RetinaFace`` class also carries download-oriented helpers and
builds its ResNet-50 with ``pretrained=False``, a keyword newer torchvision
versions no longer accept; here the same modules are assembled under the same
attribute names (so facexlib's checkpoints load strictly) and only the forward
pass is kept.
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

# backbone -> (IntermediateLayerGetter's return_layers, FPN base channels, FPN/head channels); facexlib's configs.
BACKBONES = {
    "mobilenet0.25": ({"stage1": 1, "stage2": 2, "stage3": 3}, 32, 64),
    "resnet50": ({"layer2": 1, "layer3": 2, "layer4": 3}, 256, 256),
}


def _add_upsampled(fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
    """``fine += coarse`` upsampled (nearest) to ``fine``'s size, in place, as facexlib's FPN adds its levels."""
    return fine.add_(F.interpolate(coarse, size=fine.shape[-2:], mode="nearest"))


# Rows of stride-8 context a row of the SSH's output depends on: merge1 (3x3) and the SSH's longest branch
# (three 3x3 convolutions). Even, so that a strip of level 0 starts on an even row: nearest upsampling of
# rows [first / 2, ceil(last / 2)) of level 1 then lands on the strip's rows as it does on the whole map's.
FINE_RADIUS = 4


def _context(ssh: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """facexlib's SSH forward (3x3, 5x5 and 7x7 context branches, concatenated, ReLU), its ReLU in place."""
    branch = ssh.conv5X5_1(x)
    out = torch.cat([ssh.conv3X3(x), ssh.conv5X5_2(branch), ssh.conv7x7_3(ssh.conv7X7_2(branch))], dim=1)
    return out.relu_()


class RetinaFaceNet(nn.Module):
    """RetinaFace: backbone -> FPN -> SSH -> per-level class/box/landmark heads (2 anchors per cell).

    ``forward`` takes BGR 0..255 images minus the (104, 117, 123) means and
    returns box offsets ``[B,A,4]``, face probabilities ``[B,A]`` and landmark
    offsets ``[B,A,10]`` for the ``A`` anchors (priors) of the input size.
    """

    def __init__(self, backbone: str = "mobilenet0.25"):
        from facexlib.detection.retinaface_net import (
            FPN,
            SSH,
            MobileNetV1,
            make_bbox_head,
            make_class_head,
            make_landmark_head,
        )
        from torchvision.models import resnet50
        from torchvision.models._utils import IntermediateLayerGetter

        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown RetinaFace backbone {backbone!r}; use one of {sorted(BACKBONES)}")
        self.backbone = backbone
        return_layers, base, channels = BACKBONES[backbone]
        trunk = MobileNetV1() if backbone == "mobilenet0.25" else resnet50(weights=None)
        self.body = IntermediateLayerGetter(trunk, return_layers)
        self.fpn = FPN([base * 2, base * 4, base * 8], channels)
        self.ssh1 = SSH(channels, channels)
        self.ssh2 = SSH(channels, channels)
        self.ssh3 = SSH(channels, channels)
        self.ClassHead = make_class_head(fpn_num=3, inchannels=channels)
        self.BboxHead = make_bbox_head(fpn_num=3, inchannels=channels)
        self.LandmarkHead = make_landmark_head(fpn_num=3, inchannels=channels)

    def stem(self) -> list[nn.Module]:
        """The backbone's layers up to and including the first FPN level (stride 8): the high-resolution part."""
        layers = list(self.body.children())
        return layers[: self._stem_length]

    @property
    def _stem_length(self) -> int:
        names = [name for name, _ in self.body.named_children()]
        return 1 + min(names.index(name) for name in self.body.return_layers)

    def run_stem(self, x: torch.Tensor) -> torch.Tensor:
        """``stem()`` applied to ``x``."""
        for layer in self.stem():
            x = layer(x)
        return x

    def levels(self, x: torch.Tensor | None, stem_output: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The backbone's outputs at strides 8, 16, 32 for network-normalised ``x``; ``stem_output``, when
        given, is ``x`` already through ``stem()`` (the caller ran it in strips)."""
        x = self.run_stem(x) if stem_output is None else stem_output
        outputs = [x]
        for name, layer in list(self.body.named_children())[self._stem_length :]:
            x = layer(x)
            if name in self.body.return_layers:
                outputs.append(x)
        return outputs

    def feature_pieces(self, levels: list[torch.Tensor], fine_rows: int | None = None) -> Iterator[tuple[int, int, torch.Tensor]]:
        """The SSH feature maps of ``levels`` as ``(level, first row, rows of the map)`` pieces, level 0 (stride
        8) first. facexlib's FPN (1x1 laterals; each coarser level upsampled, nearest, added; a 3x3 merge) and
        SSH. Level 0, the largest, comes in strips of ``fine_rows`` rows (None: whole), each computed from its
        rows and ``FINE_RADIUS`` more on each side, so that each equals those rows of the whole map."""
        fpn, fine_level = self.fpn, levels[0]
        coarse = fpn.output3(levels[2])
        middle = fpn.merge2(_add_upsampled(fpn.output2(levels[1]), coarse))
        height = fine_level.shape[2]
        rows = height if fine_rows is None else max(2, fine_rows // 2 * 2)  # even: a strip starts on a middle row
        for start in range(0, height, rows):
            stop = min(height, start + rows)
            first, last = max(0, start - FINE_RADIUS), min(height, stop + FINE_RADIUS)
            lateral = fpn.output1(fine_level[:, :, first:last])
            fine = fpn.merge1(_add_upsampled(lateral, middle[:, :, first // 2 : -(-last // 2)]))
            yield 0, start, _context(self.ssh1, fine)[:, :, start - first : stop - first]
        yield 1, 0, _context(self.ssh2, middle)
        yield 2, 0, _context(self.ssh3, coarse)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The three SSH feature maps (strides 8, 16, 32) for network-normalised ``x``."""
        return [piece for _, _, piece in self.feature_pieces(self.levels(x))]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.features(x)
        boxes = torch.cat([head(f) for head, f in zip(self.BboxHead, features)], dim=1)
        logits = torch.cat([head(f) for head, f in zip(self.ClassHead, features)], dim=1)
        landmarks = torch.cat([head(f) for head, f in zip(self.LandmarkHead, features)], dim=1)
        return boxes, F.softmax(logits, dim=-1)[..., 1], landmarks
