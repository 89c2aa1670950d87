"""Safe loading of GFP-GAN weight files: .safetensors first, legacy .pth without unpickling code."""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .clean import GFPGANv1Clean
from .detect import SUPPORTED, ModelLoadError, detect_architecture
from .releases import Release, find_release

_WRAPPER_KEYS = ("params_ema", "params", "state_dict")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))  # memory-mapped
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise ModelLoadError(f"{path}: not a readable .safetensors file (truncated or corrupt?): {error}") from error


def _read_pickle(path: Path) -> object:
    # torch.load hands any "*.safetensors" name to safetensors: a pickle misnamed so goes in as a file object.
    by_name = path.suffix.lower() != ".safetensors"
    try:
        if by_name:
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
        with open(path, "rb") as handle:
            return torch.load(handle, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ModelLoadError(
            f"{path}: refused to load: the file needs more than plain tensors to unpickle, and code in a weights "
            f"file is never executed. Convert a trusted copy to .safetensors first. ({str(error).splitlines()[0]})"
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise ModelLoadError(f"{path}: not a readable PyTorch weights file (truncated or corrupt?): {error}") from error


def unwrap_state_dict(obj: object, source: str) -> dict[str, torch.Tensor]:
    """The tensor dict inside a checkpoint: ``params_ema`` > ``params`` > ``state_dict``, ``module.`` stripped."""
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelLoadError(f"{source}: holds no state dict of tensors. Supported: {SUPPORTED}.")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file safely (.safetensors, or .pth/.ckpt via ``weights_only`` unpickling)."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such file.")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path}: the file is empty.")
    # By content, not by name: renamed files are common in model folders.
    if _looks_like_safetensors(path):
        return unwrap_state_dict(_read_safetensors(path), str(path))
    return unwrap_state_dict(_read_pickle(path), str(path))


def _looks_like_safetensors(path: Path) -> bool:
    """A safetensors file starts with its JSON header's length (8 bytes, little-endian), then ``{``."""
    with open(path, "rb") as handle:
        start = handle.read(9)
    return len(start) == 9 and start[8:9] == b"{" and int.from_bytes(start[:8], "little") > 1


@dataclass
class LoadedGFPGAN:
    network: nn.Module
    arch: str
    config: dict
    release: Release | None
    path: Path
    sha256: str


def build_network(arch: str, config: dict) -> nn.Module:
    if arch == "GFPGANv1Clean":
        return GFPGANv1Clean(**config)
    if arch == "GFPGANv1":
        from .original import GFPGANv1

        return GFPGANv1(**config)
    raise ModelLoadError(f"unknown architecture {arch!r}")


def check_dtype(dtype: torch.dtype) -> None:
    """Refuse fp16: the StyleGAN2 decoder's activations overflow it (reference tools mark GFPGAN fp16-unsafe)."""
    if dtype == torch.float16:
        raise ModelLoadError(
            "float16 is not supported for GFP-GAN: its StyleGAN2 decoder's activations can overflow half precision "
            "(reference tools such as spandrel mark it fp16-unsafe too). Use bfloat16 (same memory, wider range) "
            "or float32."
        )
    if dtype not in (torch.float32, torch.bfloat16):
        raise ModelLoadError(f"unsupported dtype {dtype}; use torch.float32 or torch.bfloat16.")


def network_from_state_dict(state_dict: dict[str, torch.Tensor], source: str = "<state dict>") -> tuple[nn.Module, str, dict]:
    """Detect the architecture of ``state_dict`` and return ``(network, arch, config)`` with the weights loaded."""
    spec = detect_architecture(state_dict, source=source)
    network = build_network(spec.name, spec.config)
    try:
        missing, unexpected = network.load_state_dict(state_dict, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise ModelLoadError(f"{source}: looks like {spec.name} {spec.config} but tensor shapes differ: {error}") from error
    if missing or unexpected:
        raise ModelLoadError(
            f"{source}: looks like {spec.name} {spec.config} but does not fit it: "
            f"{len(missing)} missing tensors (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})."
        )
    return network.eval().requires_grad_(False), spec.name, spec.config


def load_gfpgan(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> LoadedGFPGAN:
    """Load a GFP-GAN weights file, detect its network from the keys, and return it ready for inference."""
    check_dtype(dtype)
    path = Path(path)
    network, arch, config = network_from_state_dict(load_state_dict(path), source=str(path))
    network.to(device=device, dtype=dtype)
    sha256 = file_sha256(path)
    return LoadedGFPGAN(network, arch, config, find_release(sha256=sha256), path, sha256)
