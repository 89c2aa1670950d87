"""Which family a weights file belongs to, and loading it as a ``FaceRestorer``.

Each family recognises its own state dict from keys and shapes (its ``detect`` module, kept apart
from the network code); every file goes through the one safe reader in ``model_files``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..codeformer_arch import build_network as build_codeformer
from ..codeformer_arch import detect as codeformer_detect
from ..gfpgan_arch import detect as gfpgan_detect
from ..gfpgan_arch.build import build_network as build_gfpgan
from ..restoreformer_arch import detect as restoreformer_detect
from ..restoreformer_arch.build import build_network as build_restoreformer
from ..gpen_arch import detect as gpen_detect
from ..gpen_arch.build import build_network as build_gpen
from ..releases import find_release
from ..model_files import ArchSpec, ModelLoadError, file_sha256, load_state_dict, state_dict_mismatch
from .interface import FaceRestorer, ModelFamily, TorchFaceRestorer, check_dtype
from .onnx_graph import is_onnx_file

GFPGAN = ModelFamily(
    name="GFP-GAN",
    recognises=gfpgan_detect.is_gfpgan,
    detect=gfpgan_detect.detect_architecture,
    build=build_gfpgan,
    licence="Apache-2.0 (code); the official weights carry no separate licence",
    fidelity="the CS-SFT weight (1 = the official output)",
    default_fidelity=1.0,
    noise=True,
)

# sczhou/CodeFormer: "This project is licensed under NTU S-Lab License 1.0" (README; LICENSE), its weights included.
CODEFORMER_LICENCE = (
    "NTU S-Lab License 1.0 (code and weights): redistribution and use for non-commercial purposes only; "
    "commercial use needs the authors' permission"
)
CODEFORMER = ModelFamily(
    name="CodeFormer",
    recognises=codeformer_detect.is_restorer,
    detect=codeformer_detect.detect_architecture,
    build=build_codeformer,
    licence=CODEFORMER_LICENCE,
    fidelity="w (0 = the codebook's prior, 1 = closest to the input)",
    default_fidelity=0.5,  # upstream's inference_codeformer.py default
)
CODEFORMER_COLORIZATION = ModelFamily(  # its fusion layers are untrained: upstream runs it at w = 0 only
    name="CodeFormer colorization",
    recognises=codeformer_detect.is_colorization,
    detect=codeformer_detect.detect_architecture,
    build=build_codeformer,
    licence=CODEFORMER_LICENCE,
)

RESTOREFORMER = ModelFamily(
    name="RestoreFormer",
    recognises=restoreformer_detect.is_restoreformer,
    detect=restoreformer_detect.detect_architecture,
    build=build_restoreformer,
    licence="Apache-2.0 (code: GFPGAN's restoreformer_arch.py; the original wzhouxiff/RestoreFormer repository states "
            "none); the weights (GFPGAN v1.3.4 RestoreFormer.pth, RestoreFormerPlusPlus v1.0.0 RestoreFormer.ckpt) "
            "carry no separate licence",
    network_keys=restoreformer_detect.network_keys,
)

RESTOREFORMER_PP = ModelFamily(
    name="RestoreFormer++",
    recognises=restoreformer_detect.is_restoreformer_pp,
    detect=restoreformer_detect.detect_architecture,
    build=build_restoreformer,
    licence="Apache-2.0 (code and the v1.0.0 release weights, wzhouxiff/RestoreFormerPlusPlus)",
    network_keys=restoreformer_detect.network_keys,
)


GPEN = ModelFamily(
    name="GPEN",
    recognises=gpen_detect.is_gpen,
    detect=gpen_detect.detect_architecture,
    build=build_gpen,
    licence="our code: Apache-2.0; upstream GPEN (code and weights) has no licence file, its README said "
    "'(c) Alibaba, 2021. For academic and non-commercial use only.'",
    fidelity=None,
    noise=False,  # GPEN injects the encoder's features where StyleGAN2 injects noise: nothing random to seed
)

FAMILIES: tuple[ModelFamily, ...] = (GFPGAN, CODEFORMER, CODEFORMER_COLORIZATION, RESTOREFORMER, RESTOREFORMER_PP, GPEN)


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
