"""Which family a weights file belongs to, and loading it as a ``FaceRestorer``.

Each family (``families.py``) recognises its own state dict from keys and shapes (its ``detect`` module,
kept apart from the network code); every file goes through the one safe reader in ``model_files``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..model_files import ArchSpec, ModelLoadError, file_sha256, load_state_dict, state_dict_mismatch
from ..model_files.releases import find_release
from .families import FAMILIES, GFPGAN
from .interface import FaceRestorer, ModelFamily, TorchFaceRestorer, check_dtype
from .onnx_graph import is_onnx_file


def supported() -> str:
    return ", ".join(family.name for family in FAMILIES)


def _looks_like(state_dict: dict[str, torch.Tensor]) -> str:
    """A guess at what a foreign state dict is, for the error message."""
    keys = " ".join(list(state_dict)[:400])
    hints = [  # most specific first
        ("ClassHead", "a RetinaFace face detector"),
        ("bbox_head", "a face detector"),
        ("quant_conv", "a VQGAN-style autoencoder (taming-transformers layout, not RestoreFormer's)"),
        ("quantize", "a VQ-codebook face restorer (CodeFormer / RestoreFormer-like)"),
        ("RDB", "an ESRGAN-family upscaler"),
        ("rdb", "an ESRGAN-family upscaler"),
        ("conv_first", "an upscaler (ESRGAN / SwinIR-like)"),
        ("model.diffusion_model", "a diffusion checkpoint"),
    ]
    for needle, description in hints:
        if needle in keys:
            return description
    return f"an unknown network ({len(state_dict)} tensors, first key {next(iter(state_dict), '-')!r})"


def detect_family(state_dict: dict[str, torch.Tensor], source: str = "<state dict>") -> tuple[ModelFamily, ArchSpec]:
    """The family of ``state_dict`` and its detected network and config, or a ``ModelLoadError`` saying
    what the file looks like instead."""
    for family in FAMILIES:
        if family.recognises(state_dict):
            return family, family.detect(family.network_keys(state_dict), source)
    raise ModelLoadError(
        f"{source}: this looks like {_looks_like(state_dict)}, not a supported face restoration model. "
        f"Supported: {supported()}."
    )


def restorer_from_state_dict(
    state_dict: dict[str, torch.Tensor], source: str = "<state dict>", path: Path | None = None, sha256: str = ""
) -> TorchFaceRestorer:
    """Detect the family and network of ``state_dict`` and return it loaded (CPU, float32, eval mode)."""
    family, spec = detect_family(state_dict, source)
    state_dict = family.network_keys(state_dict)
    network = family.build(spec)
    mismatch = state_dict_mismatch(network, state_dict)
    if mismatch:
        raise ModelLoadError(f"{source}: looks like {family.name} {spec.name} {spec.config} but does not fit it: {mismatch}.")
    network.load_state_dict(state_dict, strict=True)
    release = find_release(sha256=sha256) if sha256 else None
    return TorchFaceRestorer(network.eval().requires_grad_(False), family, spec, path, sha256, release)


def identify_file(path: str | Path) -> ModelFamily:
    """The family a face restoration file loads as, told from its keys and shapes (or its ONNX graph) without
    building a network: what the nodes' fidelity default follows."""
    path = Path(path)
    if path.is_file() and is_onnx_file(path):
        from .onnx_restorer import onnx_family

        return onnx_family(path)
    return detect_family(load_state_dict(path), str(path))[0]


def load_face_restorer(
    path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> FaceRestorer:
    """Load any supported face restoration file, its family and network told from its content."""
    check_dtype(dtype)
    path = Path(path)
    if path.is_file() and is_onnx_file(path):  # ONNX files as ReActor and FaceFusion keep them
        from .onnx_restorer import load_onnx_restorer

        return load_onnx_restorer(path, device, dtype)
    restorer = restorer_from_state_dict(load_state_dict(path), str(path), path, file_sha256(path))
    return restorer.to(device, dtype)


def as_face_restorer(model: FaceRestorer | nn.Module) -> FaceRestorer:
    """``model`` as a ``FaceRestorer``: a bare GFP-GAN-style network (``forward(x, fidelity, noise)`` on
    [-1, 1], ``out_size`` square) is wrapped as one of the GFP-GAN family."""
    if isinstance(model, FaceRestorer):
        return model
    if isinstance(model, nn.Module):
        size = int(getattr(model, "out_size", 512))
        return TorchFaceRestorer(model, GFPGAN, ArchSpec(type(model).__name__, {}, size))
    raise TypeError(f"expected a FaceRestorer or a torch network, got {type(model).__name__}")
