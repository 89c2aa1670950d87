"""Describe weight files and convert legacy .pth checkpoints to .safetensors."""

from __future__ import annotations

import json
from pathlib import Path

from .detect import ModelLoadError, detect_architecture
from .load import file_sha256, load_state_dict
from .releases import find_release


def describe_file(path: str | Path) -> str:
    """A few human-readable lines: architecture, config, known release, tensor count."""
    path = Path(path)
    state_dict = load_state_dict(path)
    spec = detect_architecture(state_dict, source=str(path))
    sha256 = file_sha256(path)
    release = find_release(sha256=sha256)
    config = ", ".join(f"{k}={v}" for k, v in spec.config.items())
    known = f"official GFPGAN v{release.version} ({release.file_name})" if release else "not a known official release"
    params = sum(t.numel() for t in state_dict.values())
    return "\n".join(
        [
            f"file:         {path}",
            f"architecture: {spec.name}",
            f"config:       {config}",
            f"release:      {known}",
            f"tensors:      {len(state_dict)} ({params / 1e6:.1f} M values)",
            f"sha256:       {sha256}",
        ]
    )


def convert_to_safetensors(src: str | Path, dst: str | Path) -> Path:
    """Write ``src``'s state dict to ``dst`` as .safetensors, tensors bit-identical, provenance in the metadata."""
    from safetensors.torch import save_file

    src, dst = Path(src), Path(dst)
    if dst.suffix.lower() != ".safetensors":
        raise ModelLoadError(f"{dst}: the output file name must end in .safetensors")
    state_dict = load_state_dict(src)
    spec = detect_architecture(state_dict, source=str(src))
    metadata = {
        "arch": spec.name,
        "config": json.dumps(spec.config),
        "source_file": src.name,
        "source_sha256": file_sha256(src),
    }
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(dst), metadata=metadata)
    return dst
