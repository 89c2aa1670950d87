"""GFPGANv1: the original paper model (GFPGANv1.pth), in pure PyTorch.

Same structure as GFPGANv1Clean but with StyleGAN2's "equalized learning rate"
layers, blur-pool resampling (upfirdn2d) and fused leaky ReLUs, whose compiled
CUDA ops are replaced by the equivalents in ``ops``. Keys match the checkpoint.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .clean import GFPGANBase
from .ops import FusedLeakyReLU, fused_leaky_relu, resample_kernel, upfirdn2d
from . import stylegan2
from .stylegan2 import StyleGAN2DecoderCSFT, decoder_channels, modulated_conv

_SQRT2 = math.sqrt(2)


class Blur(nn.Module):
    """upfirdn2d smoothing (after ``up``-fold zero insertion) with fixed padding.

    GFP-GAN's checkpoints hold no kernel; with ``stored`` the kernel is a ``kernel`` buffer, as
    GPEN's checkpoints keep it (rosinality's layout), and the stored values are the ones applied.
    """

    def __init__(self, pad: tuple[int, int], gain: float = 1.0, up: int = 1, stored: bool = False):
        super().__init__()
        self.pad, self.gain, self.up = pad, gain, up
        self.register_buffer("kernel", resample_kernel() * gain if stored else None)  # None: not in the state dict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = resample_kernel() * self.gain if self.kernel is None else self.kernel
        return upfirdn2d(x, kernel, up=self.up, pad=self.pad)


class EqualLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.scale, self.lr_mul, self.activation = lr_mul / math.sqrt(in_features), lr_mul, activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class EqualConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True, bias_init: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.full((out_channels,), float(bias_init))) if bias else None
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, self.stride, self.padding)


class ScaledLeakyReLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, 0.2) * _SQRT2


class ConvLayer(nn.Sequential):
    """[blur] -> equalized conv -> [fused leaky ReLU], with the checkpoint's layer indices."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, downsample: bool = False,
                 bias: bool = True, activate: bool = True, stored_kernel: bool = False):
        layers: list[nn.Module] = []
        if downsample:
            pad = 4 - 2 + (kernel_size - 1)
            layers.append(Blur(((pad + 1) // 2, pad // 2), stored=stored_kernel))
            layers.append(EqualConv2d(in_channels, out_channels, kernel_size, 2, 0, bias and not activate))
        else:
            layers.append(EqualConv2d(in_channels, out_channels, kernel_size, 1, kernel_size // 2, bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channels) if bias else ScaledLeakyReLU())
        super().__init__(*layers)


class ResBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, bias=False, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / _SQRT2


class ConvUpLayer(nn.Module):
    """Bilinear x2 upsampling, equalized conv, optional fused leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0, bias: bool = True,
                 activate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias and not activate else None
        self.activation = FusedLeakyReLU(out_channels) if activate and bias else None
        self.scale, self.padding = 1 / math.sqrt(in_channels * kernel_size**2), padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)
        return self.activation(x) if self.activation is not None else x


class ResUpBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvUpLayer(in_channels, out_channels, 3, padding=1)
        self.skip = ConvUpLayer(in_channels, out_channels, 1, bias=False, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / _SQRT2


class ModulatedConv2d(nn.Module):
    """StyleGAN2's modulated conv; upsampling by a stride-2 transposed conv followed by a blur."""

    # The blur's name and whether its kernel is a checkpoint buffer (GPEN: "blur", stored).
    blur_name = "smooth"
    stored_kernel = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_style_feat: int,
                 demodulate: bool = True, upsample: bool = False):
        super().__init__()
        self.demodulate, self.upsample = demodulate, upsample
        self.modulation = EqualLinear(num_style_feat, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2
        if upsample:
            pad = (4 - 2) - (kernel_size - 1)
            self.add_module(self.blur_name, Blur(((pad + 1) // 2 + 1, pad // 2 + 1), gain=4.0, stored=self.stored_kernel))

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        # The blur is per channel and linear, so it commutes with the per-channel demodulation.
        out = modulated_conv(x, self.weight[0] * self.scale, self.modulation(style), self.demodulate, 1e-8, self.conv)
        return getattr(self, self.blur_name)(out) if self.upsample else out

    def conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            return F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
        return F.conv2d(x, weight, padding=self.padding)


class StyleConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, num_style_feat: int, sample_mode: str | None):
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_channels, out_channels, 3, num_style_feat,
                                              upsample=sample_mode == "upsample")
        self.weight = nn.Parameter(torch.zeros(1))  # noise strength
        self.activate = FusedLeakyReLU(out_channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.activate(self.modulated_conv(x, style) + self.weight * noise)


def upsample_2x(stored: bool = False) -> Blur:
    """StyleGAN2's x2 upsampling of the RGB skip: zero insertion, then the blur (gain 4 keeps the level)."""
    return Blur((2, 1), gain=4.0, up=2, stored=stored)


_UPSAMPLE_SKIP = upsample_2x()


class ToRGB(stylegan2.ToRGB):
    conv_class = ModulatedConv2d

    def upsample_skip(self, skip: torch.Tensor) -> torch.Tensor:
        return _UPSAMPLE_SKIP(skip)


class StyleGAN2DecoderSFT(StyleGAN2DecoderCSFT):
    """The original StyleGAN2 decoder: equalized MLP (lr multiplier 0.01), blur-pool layers."""

    style_conv = StyleConv
    to_rgb = ToRGB

    @staticmethod
    def mlp_layers(num_style_feat: int, num_mlp: int) -> list[nn.Module]:
        return [EqualLinear(num_style_feat, num_style_feat, lr_mul=0.01, activation=True) for _ in range(num_mlp)]


def _sft_branch(channels: int, out_channels: int, last_bias: float) -> nn.Sequential:
    return nn.Sequential(
        EqualConv2d(channels, channels, 3, 1, 1), ScaledLeakyReLU(),
        EqualConv2d(channels, out_channels, 3, 1, 1, bias_init=last_bias),
    )


class GFPGANv1(GFPGANBase):
    """The original GFP-GAN (paper release GFPGANv1.pth). Input/output RGB in [-1, 1]."""

    def __init__(self, out_size: int = 512, num_style_feat: int = 512, channel_multiplier: int | float = 1,
                 num_mlp: int = 8, input_is_latent: bool = True, different_w: bool = True, narrow: float = 1,
                 sft_half: bool = True):
        super().__init__()
        self.out_size, self.input_is_latent = out_size, input_is_latent
        self.different_w, self.num_style_feat = different_w, num_style_feat
        self.log_size = int(math.log2(out_size))
        channels = decoder_channels(channel_multiplier, narrow * 0.5)

        self.conv_body_first = ConvLayer(3, channels[out_size], 1)
        in_channels = channels[out_size]
        self.conv_body_down = nn.ModuleList()
        for level in range(self.log_size, 2, -1):
            self.conv_body_down.append(ResBlock(in_channels, channels[2 ** (level - 1)]))
            in_channels = channels[2 ** (level - 1)]
        self.final_conv = ConvLayer(in_channels, channels[4], 3)

        in_channels = channels[4]
        self.conv_body_up = nn.ModuleList()
        self.toRGB = nn.ModuleList()  # training-only heads, kept for the checkpoint keys
        self.condition_scale = nn.ModuleList()
        self.condition_shift = nn.ModuleList()
        for level in range(3, self.log_size + 1):
            out_channels = channels[2**level]
            self.conv_body_up.append(ResUpBlock(in_channels, out_channels))
            self.toRGB.append(EqualConv2d(out_channels, 3, 1))
            sft_channels = out_channels if sft_half else out_channels * 2
            self.condition_scale.append(_sft_branch(out_channels, sft_channels, last_bias=1.0))
            self.condition_shift.append(_sft_branch(out_channels, sft_channels, last_bias=0.0))
            in_channels = out_channels

        num_latent = self.log_size * 2 - 2
        self.final_linear = EqualLinear(channels[4] * 16, num_latent * num_style_feat if different_w else num_style_feat)
        self.stylegan_decoder = StyleGAN2DecoderSFT(out_size, num_style_feat, num_mlp, channel_multiplier, narrow, sft_half)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_body_first(x)

    def bottleneck(self, feat: torch.Tensor) -> torch.Tensor:
        return self.final_conv(feat)
