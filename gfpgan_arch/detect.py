"""Recognise a GFP-GAN state dict and infer its constructor config from keys and shapes alone."""

from __future__ import annotations

import math
import re
import torch

from ..model_files import ArchSpec, ModelLoadError


SUPPORTED = "GFPGAN v1.2 / v1.3 / v1.4 (GFPGANv1Clean) and the original GFPGANv1"


def _count(state_dict: dict[str, torch.Tensor], pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for key in state_dict if (m := regex.fullmatch(key))})


def is_gfpgan(state_dict: dict[str, torch.Tensor]) -> bool:
    """Whether the keys are a GFP-GAN network's (a StyleGAN2 decoder plus the U-Net's RGB heads)."""
    return "stylegan_decoder.constant_input.weight" in state_dict and any(k.startswith("toRGB.") for k in state_dict)


def detect_architecture(state_dict: dict[str, torch.Tensor], source: str = "<state dict>") -> ArchSpec:
    """Which GFP-GAN network this state dict belongs to, and its config."""
    if not is_gfpgan(state_dict):
        raise ModelLoadError(f"{source}: not a GFP-GAN state dict (no StyleGAN2 decoder). Supported: {SUPPORTED}.")
    name = "GFPGANv1" if "conv_body_first.0.weight" in state_dict else "GFPGANv1Clean"
    try:
        config = _infer_config(state_dict, name)
    except (KeyError, IndexError, ValueError) as error:
        raise ModelLoadError(f"{source}: a {name} state dict with missing or odd tensors ({error}).") from error
    return ArchSpec(name, config, crop_size=config["out_size"])


def _infer_config(sd: dict[str, torch.Tensor], name: str) -> dict:
    num_up_levels = _count(sd, r"toRGB\.(\d+)\..*")
    out_size = 2 ** (num_up_levels + 2)
    num_mlp = _count(sd, r"stylegan_decoder\.style_mlp\.(\d+)\.weight")
    prefix = "stylegan_decoder.style_mlp.1"
    num_style_feat = sd[f"{prefix}.weight"].shape[0] if num_mlp else sd[
        "stylegan_decoder.style_conv1.modulated_conv.modulation.weight"].shape[1]
    narrow = sd["stylegan_decoder.constant_input.weight"].shape[1] / 512
    log_size = int(math.log2(out_size))
    num_latent = log_size * 2 - 2
    linear_out = sd["final_linear.weight"].shape[0]
    different_w = linear_out == num_latent * num_style_feat

    # The decoder width at 64 px is 256 * channel_multiplier * narrow; smaller models never reach 64 px,
    # where the multiplier changes no shape and the default is as good as any.
    channel_multiplier = 2 if name == "GFPGANv1Clean" else 1
    if out_size >= 64:
        width_64 = sd["stylegan_decoder.to_rgbs.3.modulated_conv.weight"].shape[2]
        channel_multiplier = round(width_64 / (256 * narrow))

    config = dict(
        out_size=out_size,
        num_style_feat=int(num_style_feat),
        channel_multiplier=channel_multiplier,
        num_mlp=num_mlp,
        input_is_latent=True,  # not visible in the weights; every official release uses True
        different_w=different_w,
        narrow=narrow,
    )
    # sft_half: the SFT branch outputs as many channels as it takes (half-channel modulation) or twice as many.
    config["sft_half"] = sd["condition_scale.0.2.weight"].shape[0] == sd["condition_scale.0.0.weight"].shape[0]
    return config
