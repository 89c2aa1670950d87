"""facexlib's RetinaFace network, assembled from facexlib's layers (pre/post-processing lives in ``retinaface.py``).

facexlib's own ``RetinaFace`` class also carries download-oriented helpers and
builds its ResNet-50 with ``pretrained=False``, a keyword newer torchvision
versions no longer accept; here the same modules are assembled under the same
attribute names (so facexlib's checkpoints load strictly) and only the forward
pass is kept.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# backbone -> (IntermediateLayerGetter's return_layers, FPN base channels, FPN/head channels); facexlib's configs.
BACKBONES = {
    "mobilenet0.25": ({"stage1": 1, "stage2": 2, "stage3": 3}, 32, 64),
    "resnet50": ({"layer2": 1, "layer3": 2, "layer4": 3}, 256, 256),
}
def _pyramid(fpn: nn.Module, levels: list[torch.Tensor]) -> list[torch.Tensor]:
    """facexlib's FPN forward (1x1 laterals, each coarser level upsampled (nearest) and added, then a 3x3
    merge), its additions in place."""
    fine, middle, coarse = (conv(level) for conv, level in zip((fpn.output1, fpn.output2, fpn.output3), levels))
    middle = fpn.merge2(middle.add_(F.interpolate(coarse, size=middle.shape[-2:], mode="nearest")))
    fine = fpn.merge1(fine.add_(F.interpolate(middle, size=fine.shape[-2:], mode="nearest")))
    return [fine, middle, coarse]


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

    def features(self, x: torch.Tensor | None, stem_output: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The three SSH feature maps (strides 8, 16, 32) for network-normalised ``x``; ``stem_output``,
        when given, is ``x`` already through ``stem()`` (the caller ran it in strips)."""
        if stem_output is None:
            stem_output = self.run_stem(x)
        x, outputs = stem_output, [stem_output]
        for name, layer in list(self.body.named_children())[self._stem_length :]:
            x = layer(x)
            if name in self.body.return_layers:
                outputs.append(x)
        return [_context(ssh, level) for ssh, level in zip((self.ssh1, self.ssh2, self.ssh3), _pyramid(self.fpn, outputs))]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.features(x)
        boxes = torch.cat([head(f) for head, f in zip(self.BboxHead, features)], dim=1)
        logits = torch.cat([head(f) for head, f in zip(self.ClassHead, features)], dim=1)
        landmarks = torch.cat([head(f) for head, f in zip(self.LandmarkHead, features)], dim=1)
        return boxes, F.softmax(logits, dim=-1)[..., 1], landmarks
