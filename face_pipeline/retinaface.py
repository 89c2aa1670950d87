"""facexlib's RetinaFace network, assembled from facexlib's layers (pre/post-processing lives in ``detect.py``).

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
# A key only that backbone's checkpoints have.
_BACKBONE_KEYS = {"mobilenet0.25": "body.stage1.0.0.weight", "resnet50": "body.layer1.0.conv1.weight"}


def backbone_from_keys(state_dict: dict[str, torch.Tensor]) -> str | None:
    """``"mobilenet0.25"`` or ``"resnet50"`` from the keys only that backbone has; None for other files."""
    return next((backbone for backbone, key in _BACKBONE_KEYS.items() if key in state_dict), None)


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

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        levels = self.fpn(list(self.body(x).values()))
        features = [ssh(level) for ssh, level in zip((self.ssh1, self.ssh2, self.ssh3), levels)]
        boxes = torch.cat([head(f) for head, f in zip(self.BboxHead, features)], dim=1)
        logits = torch.cat([head(f) for head, f in zip(self.ClassHead, features)], dim=1)
        landmarks = torch.cat([head(f) for head, f in zip(self.LandmarkHead, features)], dim=1)
        return boxes, F.softmax(logits, dim=-1)[..., 1], landmarks
