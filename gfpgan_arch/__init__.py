"""GFP-GAN networks in plain PyTorch, with key-based detection and safe loading."""

from .clean import GFPGANv1Clean
from .convert import convert_to_safetensors, describe_file
from .detect import ArchSpec, ModelLoadError, detect_architecture
from .load import (
    DTYPE_CHOICES,
    LoadedGFPGAN,
    check_dtype,
    compute_dtype,
    load_gfpgan,
    load_state_dict,
    network_from_state_dict,
    pickle_loading_is_safe,
    state_dict_mismatch,
)
from .original import GFPGANv1
from .releases import KNOWN_RELEASES, Release, find_release

__all__ = [
    "ArchSpec",
    "DTYPE_CHOICES",
    "GFPGANv1",
    "GFPGANv1Clean",
    "KNOWN_RELEASES",
    "LoadedGFPGAN",
    "ModelLoadError",
    "Release",
    "check_dtype",
    "compute_dtype",
    "convert_to_safetensors",
    "describe_file",
    "detect_architecture",
    "find_release",
    "load_gfpgan",
    "load_state_dict",
    "network_from_state_dict",
    "pickle_loading_is_safe",
    "state_dict_mismatch",
]
