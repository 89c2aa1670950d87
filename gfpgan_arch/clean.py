"""GFPGANv1Clean: the network of the official GFPGAN v1.2, v1.3 and v1.4 releases.

A U-Net encodes the degraded face; its bottleneck becomes the StyleGAN2 latent
and its decoder features become per-resolution (scale, shift) maps that
modulate the pretrained StyleGAN2 decoder (channel-split spatial feature
transform, CS-SFT). State-dict keys equal the official checkpoints'.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .stylegan2 import StyleGAN2DecoderCSFT, decoder_channels, writable


class ResBlock(nn.Module):
    """Residual block that halves ('down') or doubles ('up') the resolution bilinearly."""

    def __init__(self, in_channels: int, out_channels: int, mode: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.scale_factor = 0.5 if mode == "down" else 2.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.conv1(x), 0.2, inplace=True)
        out = F.leaky_relu(self.conv2(self.resample(out)), 0.2, inplace=True)
        # The 1x1 skip conv (no bias) commutes with the resampling: run it at the lower resolution.
        skip = self.skip(self.resample(x)) if self.scale_factor < 1 else self.resample(self.skip(x))
        return writable(out).add_(skip)

    def resample(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)


def _sft_branch(channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(channels, out_channels, 3, 1, 1)
    )


class GFPGANBase(nn.Module):
    """The forward pass shared by GFPGANv1Clean and the original GFPGANv1 (they differ in layer types)."""

    out_size: int
    different_w: bool
    num_style_feat: int
    input_is_latent: bool

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def bottleneck(self, feat: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self, x: torch.Tensor, fidelity: float = 1.0, noise: torch.Generator | list[torch.Generator] | None = None
    ) -> torch.Tensor:
        """Restore faces.

        ``fidelity`` (w) scales the CS-SFT modulation: scale' = 1 + w (scale - 1),
        shift' = w shift. w = 1 is the official output; lower values lean on the
        generative prior. ``noise=None`` uses the stored noise buffers ('fixed');
        a ``torch.Generator`` (or one per sample) draws fresh noise ('seeded').
        """
        feat = self.stem(x)
        skips = []
        for down in self.conv_body_down:
            feat = down(feat)
            skips.append(feat)
        feat = self.bottleneck(feat)
        latent = self.final_linear(feat.flatten(1))
        if self.different_w:
            latent = latent.view(latent.size(0), -1, self.num_style_feat)

        conditions = []
        for up, to_scale, to_shift, skip in zip(self.conv_body_up, self.condition_scale, self.condition_shift, reversed(skips)):
            feat = up(feat + skip)
            scale, shift = to_scale(feat), to_shift(feat)
            if fidelity != 1.0:
                scale = 1 + fidelity * (scale - 1)
                shift = fidelity * shift
            conditions += [scale, shift]
        return self.stylegan_decoder(latent, conditions, self.input_is_latent, noise)


class GFPGANv1Clean(GFPGANBase):
    """GFP-GAN without compiled ops. Input and output: RGB in [-1, 1], ``out_size`` square."""

    def __init__(
        self,
        out_size: int = 512,
        num_style_feat: int = 512,
        channel_multiplier: int | float = 2,
        num_mlp: int = 8,
        input_is_latent: bool = True,
        different_w: bool = True,
        narrow: float = 1,
        sft_half: bool = True,
    ):
        super().__init__()
        self.out_size = out_size
        self.input_is_latent = input_is_latent
        self.different_w = different_w
        self.num_style_feat = num_style_feat
        self.log_size = int(math.log2(out_size))
        channels = decoder_channels(channel_multiplier, narrow * 0.5)  # the U-Net uses half the decoder's width

        self.conv_body_first = nn.Conv2d(3, channels[out_size], 1)
        in_channels = channels[out_size]
        self.conv_body_down = nn.ModuleList()
        for level in range(self.log_size, 2, -1):
            self.conv_body_down.append(ResBlock(in_channels, channels[2 ** (level - 1)], mode="down"))
            in_channels = channels[2 ** (level - 1)]
        self.final_conv = nn.Conv2d(in_channels, channels[4], 3, 1, 1)

        in_channels = channels[4]
        self.conv_body_up = nn.ModuleList()
        self.toRGB = nn.ModuleList()  # intermediate RGB heads: used in training only, kept for the checkpoint keys
        self.condition_scale = nn.ModuleList()
        self.condition_shift = nn.ModuleList()
        for level in range(3, self.log_size + 1):
            out_channels = channels[2**level]
            self.conv_body_up.append(ResBlock(in_channels, out_channels, mode="up"))
            self.toRGB.append(nn.Conv2d(out_channels, 3, 1))
            sft_channels = out_channels if sft_half else out_channels * 2
            self.condition_scale.append(_sft_branch(out_channels, sft_channels))
            self.condition_shift.append(_sft_branch(out_channels, sft_channels))
            in_channels = out_channels

        num_latent = self.log_size * 2 - 2
        self.final_linear = nn.Linear(channels[4] * 16, num_latent * num_style_feat if different_w else num_style_feat)
        self.stylegan_decoder = StyleGAN2DecoderCSFT(
            out_size, num_style_feat, num_mlp, channel_multiplier, narrow, sft_half
        )

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.conv_body_first(x), 0.2, inplace=True)

    def bottleneck(self, feat: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.final_conv(feat), 0.2, inplace=True)
