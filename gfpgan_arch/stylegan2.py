"""The "clean" StyleGAN2 decoder of GFPGANv1Clean (v1.2 / v1.3 / v1.4), pure PyTorch.

Parameter names and shapes match the official checkpoints. The modulated
convolution is computed batch-friendly (``modulated_conv``): one shared weight,
no per-sample weights or grouped convolutions.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F


def decoder_channels(channel_multiplier: int | float, narrow: float) -> dict[int, int]:
    """Feature channels of the StyleGAN2 decoder at each resolution."""
    return {
        4: int(512 * narrow),
        8: int(512 * narrow),
        16: int(512 * narrow),
        32: int(512 * narrow),
        64: int(256 * channel_multiplier * narrow),
        128: int(128 * channel_multiplier * narrow),
        256: int(64 * channel_multiplier * narrow),
        512: int(32 * channel_multiplier * narrow),
        1024: int(16 * channel_multiplier * narrow),
        2048: int(8 * channel_multiplier * narrow),
    }


def writable(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself at inference, so the caller can update it in place (at 512 px each fresh tensor
    costs as much as a small convolution); a copy while autograd records, which may need ``x``."""
    return x.clone() if x.requires_grad else x


class NormStyleCode(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


def modulated_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    style: torch.Tensor,
    demodulate: bool,
    eps: float,
    conv: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    gain: float = 1.0,
) -> torch.Tensor:
    """StyleGAN2 modulated convolution with one shared weight for the whole batch.

    ``weight``: ``[C_out, C_in, k, k]``; ``style``: ``[B, C_in]``; ``conv(x, weight)`` applies a
    weight (plain, transposed, ...). Scaling the input channels by the style and the output
    channels by the demodulation factor equals convolving with per-sample modulated weights,
    but runs as one dense convolution. A batch of one modulates the (small) weight instead,
    which is cheaper then. ``gain`` scales the output by riding on the demodulation factor,
    saving a pass over it (so it needs ``demodulate``).
    """
    if gain != 1.0 and not demodulate:
        raise ValueError("gain rides on the demodulation factor: it needs demodulate=True")
    if x.shape[0] == 1:
        weight = weight * style[0, None, :, None, None]
        if demodulate:
            weight = weight * (gain * torch.rsqrt(weight.pow(2).sum(dim=(1, 2, 3), keepdim=True) + eps))
        return conv(x, weight)
    out = conv(x * style[:, :, None, None], weight)
    if demodulate:
        # sum_{i,k} (w[o,i,k] * s[b,i])^2 = (s^2) @ (sum_k w^2)^T
        weight_energy = weight.pow(2).sum(dim=(2, 3))  # [C_out, C_in]
        out = out.mul_((gain * torch.rsqrt(style.pow(2) @ weight_energy.t() + eps))[:, :, None, None])
    return out


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution (no bias), with optional bilinear up/down-sampling first."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        num_style_feat: int,
        demodulate: bool = True,
        sample_mode: str | None = None,
        eps: float = 1e-8,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.demodulate = demodulate
        self.sample_mode = sample_mode
        self.eps = eps
        self.modulation = nn.Linear(num_style_feat, in_channels, bias=True)
        nn.init.kaiming_normal_(self.modulation.weight, a=0, mode="fan_in", nonlinearity="linear")
        nn.init.constant_(self.modulation.bias, 1.0)
        self.weight = nn.Parameter(
            torch.randn(1, out_channels, in_channels, kernel_size, kernel_size) / math.sqrt(in_channels * kernel_size**2)
        )
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor, style: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        if self.sample_mode == "upsample":
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        elif self.sample_mode == "downsample":
            x = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
        return modulated_conv(x, self.weight[0], self.modulation(style), self.demodulate, self.eps, self.conv, gain)

    def conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, weight, padding=self.padding)


class StyleConv(nn.Module):
    """Modulated 3x3 conv + noise injection + bias + leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, num_style_feat: int, sample_mode: str | None = None):
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_channels, out_channels, 3, num_style_feat, True, sample_mode)
        self.weight = nn.Parameter(torch.zeros(1))  # noise strength
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        out = self.modulated_conv(x, style, gain=2**0.5)  # a fresh tensor: updated in place
        out = out.add_(self.weight * noise).add_(self.bias)
        return F.leaky_relu(out, 0.2, inplace=True)


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB, added to the (upsampled) previous RGB skip."""

    conv_class: type[nn.Module] = ModulatedConv2d  # the original v1 swaps in its own conv and upsampling

    def __init__(self, in_channels: int, num_style_feat: int, upsample: bool = True):
        super().__init__()
        self.upsample = upsample
        self.modulated_conv = self.conv_class(in_channels, 3, 1, num_style_feat, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def upsample_skip(self, skip: torch.Tensor) -> torch.Tensor:
        return F.interpolate(skip, scale_factor=2, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.modulated_conv(x, style).add_(self.bias)
        if skip is not None:
            out = out.add_(self.upsample_skip(skip) if self.upsample else skip)
        return out


class ConstantInput(nn.Module):
    def __init__(self, num_channel: int, size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, num_channel, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.weight.expand(batch, -1, -1, -1)


class StyleGAN2DecoderCSFT(nn.Module):
    """StyleGAN2 generator whose features are modulated by spatial (SFT) conditions.

    The conditions come in (scale, shift) pairs, one pair per resolution from 8 up.
    With ``sft_half`` only the second half of the channels is modulated.
    """

    def __init__(
        self,
        out_size: int,
        num_style_feat: int = 512,
        num_mlp: int = 8,
        channel_multiplier: int | float = 2,
        narrow: float = 1,
        sft_half: bool = False,
    ):
        super().__init__()
        self.num_style_feat = num_style_feat
        self.sft_half = sft_half
        self.style_mlp = nn.Sequential(NormStyleCode(), *self.mlp_layers(num_style_feat, num_mlp))

        channels = decoder_channels(channel_multiplier, narrow)
        self.log_size = int(math.log2(out_size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.num_latent = self.log_size * 2 - 2

        self.constant_input = ConstantInput(channels[4], size=4)
        self.style_conv1 = self.style_conv(channels[4], channels[4], num_style_feat, None)
        self.to_rgb1 = self.to_rgb(channels[4], num_style_feat, upsample=False)
        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            resolution = 2 ** ((layer_idx + 5) // 2)
            self.noises.register_buffer(f"noise{layer_idx}", torch.randn(1, 1, resolution, resolution))
        in_channels = channels[4]
        for level in range(3, self.log_size + 1):
            out_channels = channels[2**level]
            self.style_convs.append(self.style_conv(in_channels, out_channels, num_style_feat, "upsample"))
            self.style_convs.append(self.style_conv(out_channels, out_channels, num_style_feat, None))
            self.to_rgbs.append(self.to_rgb(out_channels, num_style_feat, upsample=True))
            in_channels = out_channels

    # The original (v1) decoder swaps in its own layer types here.
    style_conv: type[nn.Module] = StyleConv
    to_rgb: type[nn.Module] = ToRGB

    @staticmethod
    def mlp_layers(num_style_feat: int, num_mlp: int) -> list[nn.Module]:
        layers: list[nn.Module] = []
        for _ in range(num_mlp):
            linear = nn.Linear(num_style_feat, num_style_feat, bias=True)
            nn.init.kaiming_normal_(linear.weight, a=0.2, mode="fan_in", nonlinearity="leaky_relu")
            nn.init.zeros_(linear.bias)
            layers += [linear, nn.LeakyReLU(0.2)]
        return layers

    def layer_noise(self, batch: int, noise: torch.Generator | list[torch.Generator] | None) -> list[torch.Tensor]:
        """Noise for each StyleConv: the stored buffers, or fresh draws.

        ``noise`` is one generator for the whole batch, or one per sample (so a
        sample's noise does not depend on which batch it is run in).
        """
        stored = [getattr(self.noises, f"noise{i}") for i in range(self.num_layers)]
        if noise is None:
            return stored
        generators = noise if isinstance(noise, (list, tuple)) else [noise]
        per_generator = batch if len(generators) == 1 else 1
        if per_generator * len(generators) != batch:
            raise ValueError(f"got {len(generators)} noise generators for a batch of {batch}")
        return [
            torch.cat(
                [torch.randn((per_generator, 1, *n.shape[-2:]), generator=g, device=g.device) for g in generators]
            ).to(n)
            for n in stored
        ]

    def forward(
        self,
        latent: torch.Tensor,
        conditions: list[torch.Tensor],
        input_is_latent: bool,
        noise: torch.Generator | list[torch.Generator] | None = None,
    ) -> torch.Tensor:
        """``latent`` is ``[B, num_style_feat]`` or per-layer ``[B, num_latent, num_style_feat]``."""
        if not input_is_latent:
            latent = self.style_mlp(latent) if latent.ndim == 2 else self.style_mlp(latent.flatten(0, 1)).view_as(latent)
        if latent.ndim == 2:
            latent = latent.unsqueeze(1).expand(-1, self.num_latent, -1)
        noises = self.layer_noise(latent.shape[0], noise)

        out = self.constant_input(latent.shape[0])
        if conditions and conditions[0].is_contiguous(memory_format=torch.channels_last):
            out = out.contiguous(memory_format=torch.channels_last)  # follow the encoder's layout
        out = self.style_conv1(out, latent[:, 0], noises[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for conv_up, conv, to_rgb in zip(self.style_convs[::2], self.style_convs[1::2], self.to_rgbs):
            out = conv_up(out, latent[:, i], noises[i])
            if i < len(conditions):
                scale, shift = conditions[i - 1], conditions[i]
                # In place on this layer's own output; with sft_half only the second half of the channels.
                out = writable(out)
                modulated = out[:, out.size(1) // 2 :] if self.sft_half else out
                modulated.mul_(scale).add_(shift)
            out = conv(out, latent[:, i + 1], noises[i + 1])
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip
