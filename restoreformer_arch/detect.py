"""Recognise RestoreFormer and RestoreFormer++ state dicts and infer their config from keys and shapes.

The two differ in the decoder's attention layout: RestoreFormer's decoder attends only where its encoder
does (the 16 px level); RestoreFormer++'s also at the next level up (32 px), with the encoder's features
there as queries. Neither file records the number of heads (8 and 4), the other difference.
"""

from __future__ import annotations

import re

import torch

from ..model_files import ArchSpec, ModelLoadError

_LIGHTNING_PREFIX = "vqvae."  # RestoreFormerPlusPlus's releases are Lightning checkpoints of a module named vqvae
HEADS = {"RestoreFormer": 8, "RestoreFormerPlusPlus": 4}
_BOTTLENECK_SIZE = 16  # px: upstream's attn_resolutions=[16] at the deepest level of a 512 px crop


def network_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The network's own tensors: a Lightning checkpoint's ``vqvae.`` prefix stripped and anything else in it
    (training-only modules) left out, as upstream's loader does; other state dicts unchanged."""
    if not any(key.startswith(_LIGHTNING_PREFIX) for key in state_dict):
        return state_dict
    return {key[len(_LIGHTNING_PREFIX):]: value for key, value in state_dict.items() if key.startswith(_LIGHTNING_PREFIX)}


def _levels(state_dict: dict[str, torch.Tensor], pattern: str) -> set[int]:
    regex = re.compile(pattern)
    return {int(m.group(1)) for key in state_dict if (m := regex.fullmatch(key))}


def _is_restoreformer_layout(sd: dict[str, torch.Tensor]) -> bool:
    """A VQ codebook plus multi-head attention blocks with a second norm for cross-attention queries (taming's
    VQGAN, which CodeFormer and others build on, has one norm per attention block)."""
    return all(key in sd for key in ("quantize.embedding.weight", "quant_conv.weight", "encoder.mid.attn_1.norm2.weight",
                                      "decoder.mid.attn_1.norm2.weight"))


def _has_extra_decoder_attention(sd: dict[str, torch.Tensor]) -> bool:
    encoder = _levels(sd, r"encoder\.down\.(\d+)\.attn\.0\.q\.weight")
    decoder = _levels(sd, r"decoder\.up\.(\d+)\.attn\.0\.q\.weight")
    return bool(decoder - encoder)


def is_restoreformer(state_dict: dict[str, torch.Tensor]) -> bool:
    """RestoreFormer (GFPGAN's ``RestoreFormer.pth``, or RestoreFormerPlusPlus's ``RestoreFormer.ckpt``)."""
    sd = network_keys(state_dict)
    return _is_restoreformer_layout(sd) and not _has_extra_decoder_attention(sd)


def is_restoreformer_pp(state_dict: dict[str, torch.Tensor]) -> bool:
    """RestoreFormer++ (``RestoreFormer++.ckpt``): the decoder attends at more levels than the encoder."""
    sd = network_keys(state_dict)
    return _is_restoreformer_layout(sd) and _has_extra_decoder_attention(sd)


def detect_architecture(state_dict: dict[str, torch.Tensor], source: str = "<state dict>") -> ArchSpec:
    """Which of the two networks ``state_dict`` (network keys, see ``network_keys``) belongs to, and its config."""
    if not _is_restoreformer_layout(state_dict):
        raise ModelLoadError(f"{source}: not a RestoreFormer / RestoreFormer++ state dict (no codebook with "
                             "multi-head cross-attention blocks).")
    name = "RestoreFormerPlusPlus" if _has_extra_decoder_attention(state_dict) else "RestoreFormer"
    try:
        config = _infer_config(state_dict, HEADS[name])
    except (KeyError, IndexError, ValueError) as error:
        raise ModelLoadError(f"{source}: a {name} state dict with missing or odd tensors ({error}).") from error
    return ArchSpec(name, config, crop_size=config["resolution"])


def _infer_config(sd: dict[str, torch.Tensor], heads: int) -> dict:
    ch, in_channels = sd["encoder.conv_in.weight"].shape[:2]
    if in_channels != 3 or sd["decoder.conv_out.weight"].shape[0] != 3:
        raise ValueError("the network does not take and give RGB images")
    levels = len(_levels(sd, r"encoder\.down\.(\d+)\..*"))
    widths = [sd[f"encoder.down.{index}.block.0.conv2.weight"].shape[0] for index in range(levels)]
    if any(width % ch for width in widths):
        raise ValueError(f"level widths {widths} are not multiples of the stem's {ch} channels")
    embed_dim, z_channels = sd["quant_conv.weight"].shape[:2]
    n_embed, codebook_dim = sd["quantize.embedding.weight"].shape
    if codebook_dim != embed_dim or sd["encoder.conv_out.weight"].shape[0] != z_channels:
        raise ValueError(f"codebook width {codebook_dim} or latent width {sd['encoder.conv_out.weight'].shape[0]} "
                         f"does not fit quant_conv {tuple(sd['quant_conv.weight'].shape)}")
    if any((width % 32) or (width % heads) for width in [ch, *widths]):
        raise ValueError(f"widths {[ch, *widths]} are not divisible by 32 norm groups and {heads} heads")
    resolution = _BOTTLENECK_SIZE * 2 ** (levels - 1)

    def sizes(pattern: str) -> tuple[int, ...]:  # feature sizes (px) of the levels with attention
        return tuple(sorted(resolution >> level for level in _levels(sd, pattern)))

    return dict(
        n_embed=int(n_embed),
        embed_dim=int(embed_dim),
        ch=int(ch),
        ch_mult=tuple(width // ch for width in widths),
        num_res_blocks=len(_levels(sd, r"encoder\.down\.0\.block\.(\d+)\..*")),
        z_channels=int(z_channels),
        resolution=resolution,
        attn_resolutions=sizes(r"encoder\.down\.(\d+)\.attn\.0\.q\.weight"),
        decoder_attn_resolutions=sizes(r"decoder\.up\.(\d+)\.attn\.0\.q\.weight"),
        head_size=heads,  # not in the weights: upstream's value for each network
    )
