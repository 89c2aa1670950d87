"""Describe weight files and convert legacy .pth checkpoints to .safetensors."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from ..model_files import ModelLoadError, file_sha256, load_state_dict
from ..model_files.releases import find_release
from .onnx_graph import is_onnx_file
from .registry import detect_family


def describe_file(path: str | Path) -> str:
    """A few human-readable lines: architecture, config, known release, tensor count."""
    path = Path(path)
    if path.is_file() and is_onnx_file(path):
        return _describe_onnx(path)
    state_dict = load_state_dict(path)
    family, spec = detect_family(state_dict, source=str(path))
    sha256 = file_sha256(path)
    release = find_release(sha256=sha256)
    config = ", ".join(f"{k}={v}" for k, v in spec.config.items())
    known = f"official {release.file_name} ({release.version})" if release else "not a known official release"
    params = sum(t.numel() for t in state_dict.values())
    return "\n".join(
        [
            f"file:         {path}",
            f"family:       {family.name} ({family.licence})",
            f"architecture: {spec.name}",
            f"config:       {config}",
            f"crop size:    {spec.crop_size} px",
            f"fidelity:     {family.fidelity or 'none (this family has no fidelity knob)'}",
            f"release:      {known}",
            f"tensors:      {len(state_dict)} ({params / 1e6:.1f} M values)",
            f"sha256:       {sha256}",
        ]
    )


def _describe_onnx(path: Path) -> str:
    from .onnx_restorer import describe_onnx

    rows = [("file", str(path)), *describe_onnx(path), ("sha256", file_sha256(path))]
    return "\n".join(f"{label + ':':<14}{text}" for label, text in rows)


def convert_to_safetensors(src: str | Path, dst: str | Path) -> Path:
    """Write ``src``'s network weights to ``dst`` as .safetensors, tensors bit-identical, provenance in the metadata."""
    from safetensors.torch import save_file

    src, dst = Path(src), Path(dst)
    if dst.suffix.lower() != ".safetensors":
        raise ModelLoadError(f"{dst}: the output file name must end in .safetensors")
    if src.is_file() and is_onnx_file(src):
        raise ModelLoadError(f"{src}: an ONNX graph, not a state dict: nothing to convert; load it as it is")
    state_dict = load_state_dict(src)
    family, spec = detect_family(state_dict, source=str(src))
    metadata = {
        "family": family.name,
        "arch": spec.name,
        "config": json.dumps(spec.config),
        "source_file": src.name,
        "source_sha256": file_sha256(src),
    }
    # The network's own keys: a Lightning checkpoint's prefix and its training-only modules are left behind.
    tensors = {k: v.contiguous() for k, v in family.network_keys(state_dict).items()}
    _write_atomically(dst, lambda part: save_file(tensors, str(part), metadata=metadata))
    return dst


def _write_atomically(dst: Path, write) -> None:
    """``write(part)`` to a temporary name beside ``dst``, then renamed onto it: a full disk, a read-only folder
    or an interrupted run leaves no partial file behind, nor a damaged earlier ``dst``; a one-line
    ``ModelLoadError`` names the output."""
    from safetensors import SafetensorError

    part = dst.with_name(f".{dst.name}.{os.getpid()}.part")  # same folder: the rename cannot cross filesystems
    try:
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as error:  # mkdir's words for it are "File exists"
            raise ModelLoadError(f"{dst}: cannot write the converted file: {dst.parent} is not a folder (a file stands "
                                 "in its path)") from error
        write(part)
        os.replace(part, dst)
    except (OSError, SafetensorError) as error:
        reason = getattr(error, "strerror", None) or (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ModelLoadError(f"{dst}: cannot write the converted file: {reason}") from error
    finally:  # after any failure, Ctrl-C included (after a rename there is nothing left to remove)
        with contextlib.suppress(OSError):
            part.unlink(missing_ok=True)
