"""Mapping a GFP-GAN ONNX export's weights back onto our PyTorch GFP-GAN network, where that is safe.

Only by name: an initializer maps onto a state-dict key when its name, after the renamings exporters are
known to make (``.`` spelt ``dot`` as in the GFPGAN-onnxruntime-demo exports, a wrapper prefix), equals the
key. Every tensor the network's forward pass uses must be found, once, with the network's shape; tensors
only training uses (the U-Net's RGB heads, the style MLP that ``input_is_latent`` skips) may be absent.
Exporters that fold weights into new constants (``torch.onnx.export``'s default optimisation does, for the
modulated convolutions) leave too few names: such files run in onnxruntime. A shape-and-order match is not
attempted: same-shaped tensors (the decoder's 512-channel layers) could be swapped unnoticed. The caller
also checks the mapped network against the graph on a probe input before trusting it.
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch

from ..model_files import ArchSpec, ModelLoadError

_PREFIXES = ("module.", "model.", "net.", "generator.", "gfpgan.", "_orig_mod.")
# Used only in training, or skipped at inference (input_is_latent): an export need not hold them.
_UNUSED_AT_INFERENCE = re.compile(r"toRGB\..*|stylegan_decoder\.style_mlp\..*")


def network_key(name: str) -> str:
    """An initializer's name as a state-dict key, undoing the exporters' renamings."""
    key = name.replace("dot", ".") if "." not in name and "dot" in name else name
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key


def gfpgan_mapping(shapes: dict[str, tuple[int, ...]], crop_size: int, source: str) -> tuple[ArchSpec, dict[str, str]] | str:
    """The GFP-GAN network these initializers (name -> shape) belong to and which initializer fills each of its
    tensors, or the reason they do not map (a phrase for the log)."""
    from ..gfpgan_arch import detect as gfpgan_detect
    from ..gfpgan_arch.build import build_network

    by_key: dict[str, list[str]] = {}
    for name in shapes:
        by_key.setdefault(network_key(name), []).append(name)
    if "stylegan_decoder.constant_input.weight" not in by_key or "final_linear.weight" not in by_key:
        return "its weights are not named as GFP-GAN's"
    doubled = sorted(key for key, names in by_key.items() if len(names) > 1)
    if doubled:
        return f"several initializers map onto {doubled[0]}"
    if crop_size < 8 or 2 ** int(math.log2(crop_size)) != crop_size:
        return f"its crop size {crop_size} is no power of two"
    # Detection reads shapes only; the RGB heads (absent from inference graphs) tell it the output size.
    meta = {key: torch.empty(shapes[names[0]], device="meta") for key, names in by_key.items()}
    for level in range(int(math.log2(crop_size)) - 2):
        meta.setdefault(f"toRGB.{level}.weight", torch.empty(0, device="meta"))
    try:
        spec = gfpgan_detect.detect_architecture(meta, source)
    except ModelLoadError as error:
        return f"its GFP-GAN-named weights do not form a network ({error})"
    if not spec.config.get("num_mlp"):
        spec = ArchSpec(spec.name, {**spec.config, "num_mlp": 8}, spec.crop_size)  # unused at inference
    with torch.device("meta"):
        expected = build_network(spec).state_dict()
    mapping, missing, reshaped = {}, [], []
    for key, tensor in expected.items():
        if key not in by_key:
            if not _UNUSED_AT_INFERENCE.fullmatch(key):
                missing.append(key)
            continue
        name = by_key[key][0]
        if tuple(shapes[name]) != tuple(tensor.shape):
            reshaped.append(f"{name} {tuple(shapes[name])} vs {tuple(tensor.shape)}")
        mapping[key] = name
    if missing:
        return f"{len(missing)} of the network's tensors are not named in it (e.g. {missing[0]}): folded by the exporter"
    if reshaped:
        return f"{len(reshaped)} tensors have other shapes (e.g. {reshaped[0]})"
    return spec, mapping


def load_mapped_network(spec: ArchSpec, mapping: dict[str, str], arrays: dict[str, np.ndarray]) -> torch.nn.Module:
    """A GFP-GAN network of ``spec`` (CPU, float32, eval) holding the mapped initializers' values; tensors the
    export does not hold (unused at inference) keep their initial values."""
    from ..gfpgan_arch.build import build_network

    network = build_network(spec)
    state_dict = network.state_dict()
    for key, name in mapping.items():
        state_dict[key] = torch.from_numpy(np.array(arrays[name], dtype=np.float32))
    network.load_state_dict(state_dict, strict=True)
    return network.eval().requires_grad_(False)
