"""The one interface the pipeline and the nodes drive, whatever network family restores the faces."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
import warnings
from typing import Callable

import torch
from torch import nn

from ..model_files import ArchSpec, ModelLoadError

COMPUTE_DTYPES = (torch.float32, torch.bfloat16)
DTYPE_CHOICES = ("auto", "fp32", "bf16")


def check_dtype(dtype: torch.dtype) -> None:
    """Refuse fp16: StyleGAN2 decoders' (and VQ decoders') activations overflow it; reference tools mark these
    networks fp16-unsafe too."""
    if dtype == torch.float16:
        raise ModelLoadError(
            "float16 is not supported for face restoration: the networks' activations can overflow half precision "
            "(reference tools such as spandrel mark GFPGAN fp16-unsafe too). Use bfloat16 (same memory, wider range) "
            "or float32."
        )
    if dtype not in COMPUTE_DTYPES:
        raise ModelLoadError(f"unsupported dtype {dtype}; use torch.float32 or torch.bfloat16.")


def compute_dtype(choice: str, bf16_supported: bool) -> torch.dtype:
    """The dtype for a user's ``auto`` / ``fp32`` / ``bf16`` (CLI and nodes alike): ``auto`` is bfloat16 where
    the device runs it natively (``bf16_supported``, the caller's answer for its device), else float32."""
    if choice == "auto":
        return torch.bfloat16 if bf16_supported else torch.float32
    if choice == "fp16":
        check_dtype(torch.float16)  # refused, with the reason
    if choice not in DTYPE_CHOICES:
        raise ModelLoadError(f"unknown dtype {choice!r}; use one of {', '.join(DTYPE_CHOICES)}")
    return torch.float32 if choice == "fp32" else torch.bfloat16


@dataclass(frozen=True)
class ModelFamily:
    """A family of face-restoration networks: how to recognise its weights and what its knobs mean.

    ``recognises`` is a cheap test on the keys; ``detect`` infers the config from keys and shapes
    (``ModelLoadError`` for a state dict of this family with missing or odd tensors); ``build`` makes
    the network for that config. Every network's ``forward(x)`` takes and returns ``[N,3,S,S]`` in
    ``input_range``; it also takes ``fidelity=`` where ``fidelity`` names what that drives, and
    ``noise=`` (None = the stored noise, or one ``torch.Generator`` per face) where ``noise`` is True.
    """

    name: str  # "GFP-GAN", "CodeFormer", ...
    recognises: Callable[[dict[str, torch.Tensor]], bool]
    detect: Callable[[dict[str, torch.Tensor], str], ArchSpec]
    build: Callable[[ArchSpec], nn.Module]
    licence: str
    fidelity: str | None = None  # what the fidelity input drives, for messages; None: the family has no such knob
    default_fidelity: float = 1.0
    noise: bool = False  # whether the network injects noise (StyleGAN2 decoders)
    input_range: tuple[float, float] = (-1.0, 1.0)
    # Official files of some families wrap or prefix their keys; this maps them onto the network's.
    network_keys: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] = field(default=lambda sd: sd)

    @property
    def no_fidelity_note(self) -> str:
        """The one phrasing, for the CLI and the nodes, of a family without the knob."""
        return f"{self.name} has no fidelity knob"


class FaceRestorer(ABC):
    """A loaded face-restoration model: aligned face crops in, restored crops out.

    ``__call__(x, fidelity, noise)`` takes ``[N,3,crop_size,crop_size]`` on ``device`` already scaled to
    ``family.input_range`` and returns the same shape and range. ``module`` is what ComfyUI's model
    management moves between devices (None where the model runs outside torch, as ONNX files do).
    """

    family: ModelFamily
    arch: str  # the network within the family, e.g. "GFPGANv1Clean"
    config: dict
    crop_size: int
    path: Path | None = None
    sha256: str = ""
    release: object | None = None  # a releases.Release where the file is a known official one

    @property
    @abstractmethod
    def device(self) -> torch.device: ...

    @property
    @abstractmethod
    def dtype(self) -> torch.dtype:
        """The weights' dtype (compute may differ under autocast)."""

    @property
    def module(self) -> nn.Module | None:
        return None

    @abstractmethod
    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "FaceRestorer": ...

    @abstractmethod
    def __call__(
        self, x: torch.Tensor, fidelity: float, noise: list[torch.Generator] | None, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """Restore ``x`` (in ``input_range``); ``dtype`` other than the weights' runs under autocast."""

    @property
    def has_fidelity(self) -> bool:
        return self.family.fidelity is not None

    def compiled(self) -> "FaceRestorer":
        """This restorer with its network run through ``torch.compile``; ``ModelLoadError`` where it is not torch's."""
        raise ModelLoadError(f"--compile: {self.path or self.arch} does not run in PyTorch ({self.family.name}), "
                             "so torch.compile cannot speed it up")


class TorchFaceRestorer(FaceRestorer):
    """A PyTorch network of a ``ModelFamily`` (GFP-GAN, CodeFormer, RestoreFormer, GPEN)."""

    def __init__(self, network: nn.Module, family: ModelFamily, spec: ArchSpec, path: Path | None = None,
                 sha256: str = "", release: object | None = None):
        self.network = network
        self.family, self.arch, self.config, self.crop_size = family, spec.name, spec.config, spec.crop_size
        self.path, self.sha256, self.release = path, sha256, release

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.network.parameters()).dtype

    @property
    def module(self) -> nn.Module:
        return self.network

    def compiled(self) -> "TorchFaceRestorer":
        self.network = CompiledNetwork(self.network)
        return self

    def to(self, device=None, dtype=None) -> "TorchFaceRestorer":
        if dtype is not None:
            check_dtype(dtype)
        self.network.to(device=device, dtype=dtype)
        return self

    def __call__(self, x, fidelity, noise, dtype=None):
        kwargs = {}
        if self.family.fidelity is not None:
            kwargs["fidelity"] = fidelity
        if self.family.noise:
            kwargs["noise"] = noise
        device = x.device
        autocast = dtype is not None and dtype != self.dtype
        with torch.autocast(device.type, dtype=dtype, enabled=autocast):
            return self.network(x.to(self.dtype), **kwargs)


class CompiledNetwork(nn.Module):
    """A network run through ``torch.compile`` (inductor, weights frozen as constants).

    On CPU this fuses the element-wise work into oneDNN's convolutions and prepacks their
    weights: ~10% faster than eager per face, but the first call (and each new shape, dtype or
    noise mode) compiles for about a minute, and inductor needs a C++ compiler there. Worth it
    for many faces in one process. If compiling fails, it warns once and runs eagerly.
    """

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network
        # A compiled bound method, not a compiled module, so the network is registered only once.
        self._compiled: Callable | None = torch.compile(network.forward, options={"freezing": True})

    @property
    def out_size(self) -> int:  # so a bare compiled GFP-GAN network still tells its crop size
        return self.network.out_size

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        if self._compiled is not None:
            try:
                return self._compiled(x, **kwargs)
            except torch.cuda.OutOfMemoryError:
                raise  # restore_crops backs off on this one
            except Exception as error:  # no C++ compiler, unsupported platform or op, ...
                warnings.warn(f"torch.compile failed, running the network uncompiled: {str(error).splitlines()[0]}")
                self._compiled = None
        return self.network(x, **kwargs)
