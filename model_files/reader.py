"""Reading model files safely, for every network the pack loads (restorers, detector, parser).

``.safetensors`` first (by content, not by name); legacy ``.pth`` / ``.ckpt`` only through
``torch.load(weights_only=True)``, so a checkpoint that would run code is refused, never executed.
"""

from __future__ import annotations

import contextlib
import hashlib
import pickle
import pickletools
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn


class ModelLoadError(Exception):
    """A weights file that cannot be loaded; the message says which file and why."""


@dataclass(frozen=True)
class ArchSpec:
    """What key-based detection found: the network's name, its constructor config, and its face crop size."""

    name: str  # e.g. "GFPGANv1Clean", "CodeFormer"
    config: dict = field(default_factory=dict)
    crop_size: int = 512


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


_SAFE_TORCH = (2, 6)  # weights_only could be bypassed to run code before torch 2.6 (CVE-2025-32434)


def pickle_loading_is_safe(version: str | None = None) -> bool:
    """Whether this torch's ``weights_only`` unpickler is a security boundary: 2.6 final or later.

    Parsed without ``packaging``: ``2.6.0+cu124`` and ``2.7.0a0`` pass, ``2.5.1`` and ``2.6.0a0+git...``
    (a pre-release of 2.6, which may predate the fix) do not.
    """
    version = torch.__version__ if version is None else version
    match = re.match(r"(\d+)\.(\d+)(?:\.\d+)*([^+]*)", str(version))
    if not match:
        return False
    release = (int(match.group(1)), int(match.group(2)))
    return release > _SAFE_TORCH or (release == _SAFE_TORCH and not match.group(3))


def _is_pickle(path: Path) -> bool:
    """Whether the file holds well-formed pickles, as ``pickletools`` reads them (it runs nothing):
    tells a checkpoint that needs code from a file that is no pickle at all."""
    try:
        with contextlib.ExitStack() as stack:
            if zipfile.is_zipfile(path):
                archive = stack.enter_context(zipfile.ZipFile(path))
                handle = stack.enter_context(archive.open(next(n for n in archive.namelist() if n.endswith("data.pkl"))))
                pickles = 1
            else:  # a plain pickle, or torch's legacy format: magic number, protocol, system info, then the object
                handle, pickles = stack.enter_context(open(path, "rb")), 4
            for count in range(pickles):
                if count and not handle.peek(1):
                    break  # a plain pickle ends after its first
                for _ in pickletools.genops(handle):
                    pass
    except Exception:  # anything zipfile or pickletools raise here means: no pickle
        return False
    return True


def _read_pickle(path: Path) -> object:
    if not pickle_loading_is_safe():
        raise ModelLoadError(
            f"{path}: refused to load: torch {torch.__version__} is older than 2.6, and before 2.6 a crafted .pth can "
            "run code even through torch's weights-only loading (CVE-2025-32434). Use the .safetensors form of the "
            "model (convert a trusted copy where torch >= 2.6 is installed), or update torch."
        )
    # torch.load hands any "*.safetensors" name to safetensors: a pickle misnamed so goes in as a file object.
    by_name = path.suffix.lower() != ".safetensors"
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4": the error below says all there is to say
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            if by_name:
                return torch.load(str(path), map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
            with open(path, "rb") as handle:
                return torch.load(handle, map_location="cpu", weights_only=True)
    except Exception as error:  # on a non-checkpoint torch.load raises nearly anything (KeyError, struct.error, ...)
        cause = error.__context__ if isinstance(error, pickle.UnpicklingError) and error.__context__ else error
        reason = f"{type(cause).__name__}: {str(cause).strip().split('. ')[0][:200]}"
        if isinstance(error, pickle.UnpicklingError) and _is_pickle(path):
            raise ModelLoadError(
                f"{path}: refused to load: the file needs more than plain tensors to unpickle, and code in a weights "
                f"file is never executed. Convert a trusted copy to .safetensors first. ({reason})"
            ) from error
        if path.suffix.lower() == ".onnx":  # ONNX content never reaches here (the registry tells it first)
            raise ModelLoadError(
                f"{path}: not an ONNX graph (nor a .pth or .safetensors file): truncated or corrupt, or another kind "
                "of file"
            ) from error
        raise ModelLoadError(
            f"{path}: not a PyTorch checkpoint (truncated or corrupt, or another kind of file): {reason}"
        ) from error


def unwrap_state_dict(obj: object, source: str) -> dict[str, torch.Tensor]:
    """The tensor dict inside a checkpoint: ``params_ema`` > ``params`` > ``state_dict``, ``module.`` stripped."""
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelLoadError(f"{source}: holds no state dict of tensors.")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file safely (.safetensors, or .pth/.ckpt via ``weights_only`` unpickling)."""
    path = Path(path)
    if path.is_dir():
        raise ModelLoadError(f"{path}: is a folder, not a model file.")
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


def _some(keys: list[str], shown: int = 5) -> str:
    return ", ".join(keys[:shown]) + (f" and {len(keys) - shown} more" if len(keys) > shown else "")


def state_dict_mismatch(network: nn.Module, state_dict: dict[str, torch.Tensor]) -> str | None:
    """None if ``state_dict`` fits ``network`` exactly (keys and shapes), else a short account of how it
    does not: counts and a few keys of each kind, never the whole list (files hold hundreds)."""
    expected = network.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    reshaped = [
        f"{key} {tuple(state_dict[key].shape)} vs {tuple(expected[key].shape)}"
        for key in expected
        if key in state_dict and state_dict[key].shape != expected[key].shape
    ]
    parts = [
        f"{len(keys)} {what} ({_some(keys)})"
        for what, keys in (("missing tensors", missing), ("unexpected tensors", unexpected),
                           ("tensors of other shapes (file vs network)", reshaped))
        if keys
    ]
    return "; ".join(parts) or None
