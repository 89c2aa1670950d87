"""Recognise a GPEN (FullGenerator) state dict and infer its constructor config from keys and shapes alone."""

from __future__ import annotations

import re

import torch

from ..model_files import ArchSpec, ModelLoadError

SUPPORTED = "GPEN-BFR-256 / 512 / 1024 / 2048 (GPEN's FullGenerator)"


def _count(state_dict: dict[str, torch.Tensor], pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for key in state_dict if (m := regex.fullmatch(key))})


def is_gpen(state_dict: dict[str, torch.Tensor]) -> bool:
    """Whether the keys are GPEN's: an ``ecd*`` encoder feeding a ``generator.*`` StyleGAN2 (rosinality's
    names; GFP-GAN's decoder lives under ``stylegan_decoder.*`` instead)."""
    return "generator.input.input" in state_dict and "ecd0.0.0.weight" in state_dict


def detect_architecture(state_dict: dict[str, torch.Tensor], source: str = "<state dict>") -> ArchSpec:
    """GPEN's config for this state dict; the crop size is the network's input (= output) size."""
    if not is_gpen(state_dict):
        raise ModelLoadError(f"{source}: not a GPEN state dict (no ecd0 encoder / generator). Supported: {SUPPORTED}.")
    try:
        config = _infer_config(state_dict)
    except (KeyError, IndexError, ValueError, ZeroDivisionError) as error:
        raise ModelLoadError(f"{source}: a GPEN state dict with missing or odd tensors ({error}).") from error
    return ArchSpec("GPEN", config, crop_size=config["size"])


def _infer_config(sd: dict[str, torch.Tensor]) -> dict:
    in_size = 2 ** (_count(sd, r"ecd(\d+)\.0\.\d+\.weight") + 1)  # encoder stages: size down to 4 px
    size = 2 ** (_count(sd, r"generator\.to_rgbs\.(\d+)\.conv\.weight") + 2)  # generator levels: 8 px up to size
    if in_size != size:
        raise ValueError(f"a {in_size} px encoder with a {size} px generator (GPEN's FullGenerator_SR, not supported)")
    if not 8 <= size <= 2048:
        raise ValueError(f"size {size} px outside 8..2048")
    narrow = sd["generator.input.input"].shape[1] / 512
    conv1_out = sd["generator.conv1.conv.weight"].shape[1]
    is_concat = sd["generator.conv1.activate.bias"].shape[0] == 2 * conv1_out
    # The width at 64 px is 256 * channel_multiplier * narrow; below 64 px the multiplier changes no
    # shape and upstream's default (2) is as good as any.
    channel_multiplier: int | float = 2
    if size >= 64:
        width_64 = sd[f"generator.convs.{2 * (6 - 3)}.conv.weight"].shape[1]
        channel_multiplier = width_64 / (256 * narrow)
        if channel_multiplier == int(channel_multiplier):
            channel_multiplier = int(channel_multiplier)
    return dict(
        size=size,
        style_dim=int(sd["final_linear.0.weight"].shape[0]),
        n_mlp=_count(sd, r"generator\.style\.(\d+)\.weight"),
        channel_multiplier=channel_multiplier,
        narrow=narrow,
        is_concat=bool(is_concat),
    )
