"""Which family a detector file belongs to (from its keys), loading it as a ``FaceDetector``, and describing it."""

from __future__ import annotations

from pathlib import Path

import torch

from .interface import DetectorFamily, FaceDetector, FaceModelError
from .retinaface import RETINAFACE
from .yolov5face import YOLOV5_FACE

DETECTOR_FAMILIES: tuple[DetectorFamily, ...] = (RETINAFACE, YOLOV5_FACE)
DETECTOR_FILES = tuple(name for family in DETECTOR_FAMILIES for name in family.files)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A local weights file's state dict, read safely (``module.`` prefixes dropped); its errors as FaceModelError."""
    from ..model_files import ModelLoadError, load_state_dict

    try:
        state_dict = load_state_dict(path)
    except ModelLoadError as error:
        raise FaceModelError(str(error)) from error
    return {key.removeprefix("module."): value for key, value in state_dict.items()}


def detector_family(state_dict: dict[str, torch.Tensor]) -> tuple[DetectorFamily, str] | None:
    """The family and variant a state dict's keys say it is; None for a file that is no detector we read."""
    for family in DETECTOR_FAMILIES:
        variant = family.variant(state_dict)
        if variant is not None:
            return family, variant
    return None


def load_detector(path: str | Path, device: str | torch.device = "cpu") -> FaceDetector:
    """The detector in a local weights file (family and config from its keys), loaded strictly, on ``device``."""
    path = Path(path)
    state_dict = read_weights(path)
    found = detector_family(state_dict)
    if found is None:
        raise FaceModelError(
            f"{path}: not a face detector this pack reads (expected one of {', '.join(DETECTOR_FILES)}, in their "
            "official layout)."
        )
    family, variant = found
    detector = family.load(state_dict, variant, path)
    detector.network.to(device)
    return detector


def describe_detector(path: Path) -> str | None:
    """``inspect``'s lines for a face detector file (family, variant, licence, official release); None for a file
    that holds no detector. Its network is built, so a damaged file is one line here, as when it is loaded."""
    from ..model_files import file_sha256
    from ..model_files.releases import find_release

    try:
        state_dict = read_weights(path)
    except FaceModelError:
        return None
    found = detector_family(state_dict)
    if found is None:
        return None
    family, variant = found
    family.load(state_dict, variant, path)
    sha256 = file_sha256(path)
    release = find_release(sha256=sha256)
    if release is not None:
        known = f"official {release.file_name} (sha256 matches)"
    else:  # most detector files have no pinned hash: an official name holding that variant is said as such
        release = find_release(file_name=path.name)
        if release is not None and (release.arch, release.version, release.sha256) == (family.name, variant, None):
            known = f"named as the official {release.file_name} (no known sha256 to verify it by)"
        else:
            release, known = None, "not a known official release"
    params = sum(t.numel() for t in state_dict.values())
    rows = [
        ("file", str(path)),
        ("family", f"{family.name} face detector"),
        ("variant", variant),
        ("licence", release.licence if release else family.licence),
        ("release", known),
        ("tensors", f"{len(state_dict)} ({params / 1e6:.1f} M values)"),
        ("sha256", sha256),
    ]
    return "\n".join(f"{label + ':':<14}{text}" for label, text in rows)
