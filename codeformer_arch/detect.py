"""Recognise a CodeFormer state dict, tell upstream's three releases apart and infer the config from shapes.

sczhou/CodeFormer v0.1.0 ships three files of the one ``CodeFormer`` class, told apart by their
shapes alone (upstream's inference scripts load each with ``strict=True`` at these configs):

- ``codeformer.pth`` (restoration): 1024 codes, fusion at 32/64/128/256 px, run with ``w`` in [0, 1];
- ``codeformer_colorization.pth``: 1024 codes, fusion at 32/64/128 px; trained without the fusion
  stage, so upstream runs it at ``w = 0`` only;
- ``codeformer_inpainting.pth``: 512 codes, fusion at 32/64/128 px; fills white-masked areas of clean
  faces (``w = 1``, no AdaIN, a mask composite): no face restorer, refused here.
"""

from __future__ import annotations

import re

import torch

from ..model_files import ArchSpec, ModelLoadError
from .codeformer import FUSE_SIZES
from .vqgan import IMAGE_SIZE, LATENT_SIZE

SUPPORTED = "CodeFormer v0.1.0 (codeformer.pth) and its colorization model (codeformer_colorization.pth)"
N_HEAD = 8  # not in the weights (in_proj_weight is [3 * dim, dim] for any head count): upstream's value
_SHORT_CONNECT_LIST = ("32", "64", "128")  # the colorization and inpainting releases'
_INPAINTING_CODES = 512


def is_codeformer(state_dict: dict[str, torch.Tensor]) -> bool:
    """Whether the keys are CodeFormer's (its transformer's position embedding or code-prediction head)."""
    return "position_emb" in state_dict or "idx_pred_layer.1.weight" in state_dict


def connect_list(state_dict: dict[str, torch.Tensor]) -> tuple[str, ...]:
    """The resolutions (px, as the keys spell them) that have fusion layers, smallest first."""
    present = {m.group(1) for key in state_dict if (m := re.match(r"fuse_convs_dict\.(\d+)\.", key))}
    return tuple(sorted(present, key=int))


def _codebook_size(state_dict: dict[str, torch.Tensor]) -> int | None:
    weight = state_dict.get("quantize.embedding.weight")
    return None if weight is None or weight.dim() != 2 else int(weight.shape[0])


def is_colorization(state_dict: dict[str, torch.Tensor]) -> bool:
    """Upstream's colorization release: fusion at 32/64/128 px only, 1024 codes."""
    return (is_codeformer(state_dict) and connect_list(state_dict) == _SHORT_CONNECT_LIST
            and _codebook_size(state_dict) not in (None, _INPAINTING_CODES))


def is_restorer(state_dict: dict[str, torch.Tensor]) -> bool:
    """CodeFormer but not the colorization model (the inpainting one is refused by ``detect_architecture``)."""
    return is_codeformer(state_dict) and not is_colorization(state_dict)


def detect_architecture(state_dict: dict[str, torch.Tensor], source: str = "<state dict>") -> ArchSpec:
    """Which CodeFormer network this state dict is (``CodeFormer`` or ``CodeFormerColorization``), and its config."""
    if not is_codeformer(state_dict):
        raise ModelLoadError(f"{source}: not a CodeFormer state dict (no position_emb / idx_pred_layer). "
                             f"Supported: {SUPPORTED}.")
    fusion = connect_list(state_dict)
    if fusion == _SHORT_CONNECT_LIST and _codebook_size(state_dict) == _INPAINTING_CODES:
        raise ModelLoadError(
            f"{source}: this is CodeFormer's inpainting model (codeformer_inpainting.pth: 512 codes, fusion at "
            "32/64/128 px), which fills white-masked areas of clean aligned faces; it is not a face restorer. "
            f"Supported: {SUPPORTED}."
        )
    name = "CodeFormerColorization" if is_colorization(state_dict) else "CodeFormer"
    try:
        config = _infer_config(state_dict, fusion)
    except (KeyError, IndexError, ValueError) as error:
        detail = f"no {error.args[0]!r}" if isinstance(error, KeyError) else str(error)
        raise ModelLoadError(f"{source}: a {name} state dict with missing or odd tensors ({detail}).") from error
    return ArchSpec(name, config, crop_size=IMAGE_SIZE)


def _shape(sd: dict[str, torch.Tensor], key: str, dims: int) -> tuple[int, ...]:
    shape = tuple(sd[key].shape)
    if len(shape) != dims:
        raise ValueError(f"{key} has shape {shape}, not {dims}-D")
    return shape


def _infer_config(sd: dict[str, torch.Tensor], fusion: tuple[str, ...]) -> dict:
    positions, dim_embd = _shape(sd, "position_emb", 2)
    codebook_size, emb_dim = _shape(sd, "quantize.embedding.weight", 2)
    nf = _shape(sd, "encoder.blocks.0.weight", 4)[0]
    n_layers = len({m.group(1) for key in sd if (m := re.match(r"ft_layers\.(\d+)\.", key))})
    if positions != LATENT_SIZE * LATENT_SIZE:
        raise ValueError(f"position_emb has {positions} positions; CodeFormer's code grid is "
                         f"{LATENT_SIZE} x {LATENT_SIZE} = {LATENT_SIZE * LATENT_SIZE}")
    if nf % 32:
        raise ValueError(f"encoder width {nf} is not a multiple of 32 (GroupNorm's 32 groups)")
    if dim_embd % N_HEAD:
        raise ValueError(f"transformer width {dim_embd} is not divisible by its {N_HEAD} heads")
    if not n_layers:
        raise ValueError("no transformer layers (ft_layers)")
    unknown = set(fusion) - set(FUSE_SIZES)
    if unknown:
        raise ValueError(f"fusion layers at unknown sizes {sorted(unknown, key=int)}")
    return dict(dim_embd=int(dim_embd), n_head=N_HEAD, n_layers=n_layers, codebook_size=int(codebook_size),
                latent_size=int(positions), connect_list=list(fusion), nf=int(nf), emb_dim=int(emb_dim))
