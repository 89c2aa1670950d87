"""YOLOv5-face (deepcam-cn/yolov5-face, as CodeFormer ships it): a YOLOv5 with five landmarks per box.

Two topologies cover the published files: ``"csp"`` (C3 blocks: the s, m and l files) and
``"shufflenet"`` (ShuffleNetV2 blocks: the n files). Every layer's width and depth is a constructor
argument (``yolov5face.py`` reads them from a checkpoint's shapes); attribute names follow upstream's
``model.<index>.…`` keys so its checkpoints load strictly. ``forward`` returns the raw head maps;
decoding, letterboxing and NMS live in ``yolov5face.py``.
"""

from __future__ import annotations

import torch
from torch import nn

# Per output: box (4), objectness (1), five landmarks (10), face class (1).
OUTPUTS_PER_ANCHOR = 16
SPP_KERNELS = (3, 5, 7)  # every yolov5-face config; pooling sizes leave no trace in the weights


class Conv(nn.Module):
    """Conv2d (no bias, "same" padding) -> BatchNorm -> SiLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class StemBlock(nn.Module):
    """Stride-4 stem: a 3x3/2 conv, then a 3x3/2 conv path beside a 2x2 max-pool, merged by a 1x1."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.stem_1 = Conv(c_in, c_out, 3, 2)
        self.stem_2a = Conv(c_out, c_out // 2, 1)
        self.stem_2b = Conv(c_out // 2, c_out, 3, 2)
        self.stem_2p = nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)
        self.stem_3 = Conv(c_out * 2, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_1(x)
        return self.stem_3(torch.cat([self.stem_2b(self.stem_2a(x)), self.stem_2p(x)], dim=1))


class Bottleneck(nn.Module):
    def __init__(self, channels: int, shortcut: bool):
        super().__init__()
        self.cv1 = Conv(channels, channels, 1)
        self.cv2 = Conv(channels, channels, 3)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.shortcut else y


class C3(nn.Module):
    """CSP block: ``depth`` bottlenecks on half the channels beside a 1x1 path, merged by a 1x1."""

    def __init__(self, c_in: int, c_out: int, depth: int, shortcut: bool = True):
        super().__init__()
        hidden = c_out // 2
        self.cv1 = Conv(c_in, hidden, 1)
        self.cv2 = Conv(c_in, hidden, 1)
        self.cv3 = Conv(2 * hidden, c_out, 1)
        self.m = nn.Sequential(*(Bottleneck(hidden, shortcut) for _ in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat([self.m(self.cv1(x)), self.cv2(x)], dim=1))


class SPP(nn.Module):
    """Spatial pyramid pooling: max-pools of several sizes beside the input, merged by a 1x1."""

    def __init__(self, c_in: int, c_out: int, kernels: tuple[int, ...] = SPP_KERNELS):
        super().__init__()
        hidden = c_in // 2
        self.cv1 = Conv(c_in, hidden, 1)
        self.cv2 = Conv(hidden * (len(kernels) + 1), c_out, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2) for k in kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        return self.cv2(torch.cat([x] + [pool(x) for pool in self.m], dim=1))


def _depthwise(channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, stride, 1, groups=channels, bias=False)


class ShuffleV2Block(nn.Module):
    """ShuffleNetV2 unit: stride 1 transforms half the channels; stride 2 runs two branches on all of them."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        branch = c_out // 2
        self.stride = stride
        if stride > 1:
            self.branch1 = nn.Sequential(
                _depthwise(c_in, stride), nn.BatchNorm2d(c_in),
                nn.Conv2d(c_in, branch, 1, bias=False), nn.BatchNorm2d(branch), nn.SiLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(c_in if stride > 1 else branch, branch, 1, bias=False), nn.BatchNorm2d(branch),
            nn.SiLU(inplace=True),
            _depthwise(branch, stride), nn.BatchNorm2d(branch),
            nn.Conv2d(branch, branch, 1, bias=False), nn.BatchNorm2d(branch), nn.SiLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            kept, transformed = x.chunk(2, dim=1)
            out = torch.cat([kept, self.branch2(transformed)], dim=1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], dim=1)
        batch, channels, height, width = out.shape
        # channel shuffle, two groups: interleave the branches' channels
        return out.view(batch, 2, channels // 2, height, width).transpose(1, 2).reshape(batch, channels, height, width)


class Detect(nn.Module):
    """The per-level 1x1 output convs; ``anchors`` (grid units of each level) and ``anchor_grid`` (pixels) as
    upstream stores them."""

    def __init__(self, channels: list[int], anchors: torch.Tensor, strides: tuple[int, ...]):
        super().__init__()
        levels, per_level = anchors.shape[:2]
        pixels = anchors * torch.tensor(strides, dtype=anchors.dtype).view(-1, 1, 1)
        self.register_buffer("anchors", anchors.clone())
        self.register_buffer("anchor_grid", pixels.view(levels, 1, per_level, 1, 1, 2))
        self.m = nn.ModuleList(nn.Conv2d(c, OUTPUTS_PER_ANCHOR * per_level, 1) for c in channels)


# Each topology as (input layers, block) rows, in upstream's layer order; -1 is the previous layer's output.
# Blocks: stem, conv3s2 (3x3 stride 2), conv1 (1x1), c3, c3_plain (no shortcut), spp, shuffle2 (stride 2),
# shuffle1 (stride 1 units, repeated), up (2x nearest), cat.
TOPOLOGIES = {
    "csp": (  # yolov5{s,m,l}-face
        ((-1,), "stem"), ((-1,), "c3"), ((-1,), "conv3s2"), ((-1,), "c3"), ((-1,), "conv3s2"), ((-1,), "c3"),
        ((-1,), "conv3s2"), ((-1,), "spp"), ((-1,), "c3_plain"),
        ((-1,), "conv1"), ((-1,), "up"), ((-1, 5), "cat"), ((-1,), "c3_plain"),
        ((-1,), "conv1"), ((-1,), "up"), ((-1, 3), "cat"), ((-1,), "c3_plain"),
        ((-1,), "conv3s2"), ((-1, 13), "cat"), ((-1,), "c3_plain"),
        ((-1,), "conv3s2"), ((-1, 9), "cat"), ((-1,), "c3_plain"),
    ),
    "shufflenet": (  # yolov5n-face, yolov5n-0.5-face
        ((-1,), "stem"), ((-1,), "shuffle2"), ((-1,), "shuffle1"), ((-1,), "shuffle2"), ((-1,), "shuffle1"),
        ((-1,), "shuffle2"), ((-1,), "shuffle1"),
        ((-1,), "conv1"), ((-1,), "up"), ((-1, 4), "cat"), ((-1,), "c3_plain"),
        ((-1,), "conv1"), ((-1,), "up"), ((-1, 2), "cat"), ((-1,), "c3_plain"),
        ((-1,), "conv3s2"), ((-1, 11), "cat"), ((-1,), "c3_plain"),
        ((-1,), "conv3s2"), ((-1, 7), "cat"), ((-1,), "c3_plain"),
    ),
}
# The layers whose outputs the heads read (P3/8, P4/16, P5/32).
HEAD_INPUTS = {"csp": (16, 19, 22), "shufflenet": (14, 17, 20)}


def _block(kind: str, c_in: int, c_out: int, depth: int, nested: bool) -> nn.Module:
    if kind == "stem":
        return StemBlock(c_in, c_out)
    if kind in ("conv1", "conv3s2"):
        return Conv(c_in, c_out, 1, 1) if kind == "conv1" else Conv(c_in, c_out, 3, 2)
    if kind in ("c3", "c3_plain"):
        return C3(c_in, c_out, depth, shortcut=kind == "c3")
    if kind == "spp":
        return SPP(c_in, c_out)
    if kind == "shuffle2":
        return ShuffleV2Block(c_in, c_out, 2)
    if kind == "shuffle1":  # upstream wraps repeated units in a Sequential (keys model.<i>.<j>.…), a single one not
        units = [ShuffleV2Block(c_out, c_out, 1) for _ in range(depth)]
        return nn.Sequential(*units) if nested else units[0]
    return nn.Upsample(scale_factor=2.0, mode="nearest") if kind == "up" else nn.Identity()  # "cat": in forward


class YoloV5FaceNet(nn.Module):
    """YOLOv5-face for ``topology``; ``widths[i]``/``depths[i]`` are layer i's output channels and repeats
    (0 where a layer has none), ``nested[i]`` whether repeated units sit in a Sequential, ``anchors``
    ``[levels, anchors, 2]`` in grid units of each level. Input: RGB 0..1, sides multiples of 32."""

    strides = (8, 16, 32)

    def __init__(self, topology: str, widths: list[int], depths: list[int], nested: list[bool], anchors: torch.Tensor):
        super().__init__()
        if topology not in TOPOLOGIES:
            raise ValueError(f"unknown YOLOv5-face topology {topology!r}; use one of {sorted(TOPOLOGIES)}")
        self.topology = topology
        rows = TOPOLOGIES[topology]
        channels: list[int] = []
        layers: list[nn.Module] = []
        for index, (sources, kind) in enumerate(rows):
            c_in = 3 if index == 0 else channels[-1]
            if kind == "cat":
                width = sum(channels[s] for s in sources)
            elif kind == "up":
                width = c_in
            else:
                width = widths[index]
            layers.append(_block(kind, c_in, width, depths[index], nested[index]))
            channels.append(width)
        head_inputs = HEAD_INPUTS[topology]
        self.model = nn.ModuleList([*layers, Detect([channels[i] for i in head_inputs], anchors, self.strides)])
        self._rows = rows
        self._head_inputs = head_inputs
        self._kept = {s for sources, _ in rows for s in sources if s != -1} | set(head_inputs)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Raw head maps ``[B, anchors * 16, H/s, W/s]`` for the strides 8, 16 and 32."""
        kept: dict[int, torch.Tensor] = {}
        for index, ((sources, kind), layer) in enumerate(zip(self._rows, self.model)):
            if kind == "cat":
                x = torch.cat([x if s == -1 else kept[s] for s in sources], dim=1)
            else:
                x = layer(x)
            if index in self._kept:
                kept[index] = x
        detect = self.model[-1]
        return [conv(kept[i]) for conv, i in zip(detect.m, self._head_inputs)]
