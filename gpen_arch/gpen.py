"""GPEN's FullGenerator (GPEN-BFR-256 / 512 / 1024 / 2048), in pure PyTorch.

A strided-conv encoder reads the degraded face; its last (4x4) features become the StyleGAN2
latent and every encoder feature map is fed to the StyleGAN2 generator layer of the same
resolution where StyleGAN2 injects noise: ``weight * feature`` is concatenated to the layer's
output (``is_concat``, the official files) or added to it.

So GPEN draws no random noise at inference: upstream's ``FullGenerator`` always passes the encoder
features, and its random-noise fallback is never reached. The output is a deterministic function
of the input, as upstream's is; the family therefore has no noise knob.

State-dict keys equal the official checkpoints' (rosinality's StyleGAN2 layout, blur kernels
stored as buffers). The StyleGAN2 layers are GFP-GAN's original-v1 ones (``gfpgan_arch.original``),
with GPEN's names.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..gfpgan_arch import original
from ..gfpgan_arch.ops import FusedLeakyReLU
from ..gfpgan_arch.original import ConvLayer, EqualLinear, upsample_2x
from ..gfpgan_arch.stylegan2 import NormStyleCode, decoder_channels


class ModulatedConv2d(original.ModulatedConv2d):
    blur_name = "blur"
    stored_kernel = True


class NoiseInjection(nn.Module):
    """Injects ``weight * feature`` (here an encoder feature, not random noise)."""

    def __init__(self, is_concat: bool):
        super().__init__()
        self.is_concat = is_concat
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        if self.is_concat:
            return torch.cat((x, self.weight * feature), dim=1)
        return x + self.weight * feature


class StyledConv(nn.Module):
    """Modulated 3x3 conv (optionally upsampling x2), feature injection, fused bias + leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, upsample: bool, is_concat: bool):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection(is_concat)
        self.activate = FusedLeakyReLU(out_channels * (2 if is_concat else 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), feature))


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB (no demodulation), plus the x2-upsampled previous RGB skip."""

    def __init__(self, in_channels: int, style_dim: int, upsample: bool = True):
        super().__init__()
        if upsample:
            self.upsample = upsample_2x(stored=True)
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        return out if skip is None else out + self.upsample(skip)


class Generator(nn.Module):
    """GPEN's StyleGAN2 generator: a style MLP and one feature-injected conv pair per resolution."""

    def __init__(self, size: int, style_dim: int, n_mlp: int, channel_multiplier: int | float, narrow: float,
                 is_concat: bool):
        super().__init__()
        channels = decoder_channels(channel_multiplier, narrow)
        width = 2 if is_concat else 1  # the injected features double the channels after each conv
        self.style = nn.Sequential(
            NormStyleCode(), *[EqualLinear(style_dim, style_dim, lr_mul=0.01, activation=True) for _ in range(n_mlp)]
        )
        self.input = nn.Module()  # the learned constant, at the checkpoint's key "input.input"
        self.input.input = nn.Parameter(torch.randn(1, channels[4], 4, 4))
        self.conv1 = StyledConv(channels[4], channels[4], style_dim, upsample=False, is_concat=is_concat)
        self.to_rgb1 = ToRGB(channels[4] * width, style_dim, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_channels = channels[4]
        for level in range(3, int(math.log2(size)) + 1):
            out_channels = channels[2**level]
            self.convs.append(StyledConv(in_channels * width, out_channels, style_dim, True, is_concat))
            self.convs.append(StyledConv(out_channels * width, out_channels, style_dim, False, is_concat))
            self.to_rgbs.append(ToRGB(out_channels * width, style_dim))
            in_channels = out_channels

    def forward(self, style: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        """``style``: ``[B, style_dim]`` (after the MLP), the same for every layer; ``features``: the
        encoder's maps from 4x4 up to full size, one per resolution (both convs of a level take it)."""
        out = self.input.input.expand(style.shape[0], -1, -1, -1)
        out = self.conv1(out, style, features[0])
        skip = self.to_rgb1(out, style)
        for conv_up, conv, to_rgb, feature in zip(self.convs[::2], self.convs[1::2], self.to_rgbs, features[1:]):
            out = conv(conv_up(out, style, feature), style, feature)
            skip = to_rgb(out, style, skip)
        return skip


class GPEN(nn.Module):
    """GPEN's FullGenerator (blind face restoration): RGB ``[N,3,size,size]`` in [-1, 1] in and out."""

    def __init__(self, size: int = 512, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int | float = 2,
                 narrow: float = 1.0, is_concat: bool = True):
        super().__init__()
        self.out_size = size
        self.num_levels = int(math.log2(size)) - 1  # encoder stages: full size down to 4x4
        channels = decoder_channels(channel_multiplier, narrow)
        self.ecd0 = nn.Sequential(ConvLayer(3, channels[size], 1))
        for index in range(1, self.num_levels):
            in_channels, out_channels = channels[size >> (index - 1)], channels[size >> index]
            self.add_module(f"ecd{index}", nn.Sequential(
                ConvLayer(in_channels, out_channels, 3, downsample=True, stored_kernel=True)))
        self.final_linear = nn.Sequential(EqualLinear(channels[4] * 16, style_dim, activation=True))
        self.generator = Generator(size, style_dim, n_mlp, channel_multiplier, narrow, is_concat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = []
        for index in range(self.num_levels):
            x = getattr(self, f"ecd{index}")(x)
            features.append(x)
        style = self.generator.style(self.final_linear(x.flatten(1)))
        return self.generator(style, features[::-1])
