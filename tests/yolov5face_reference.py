"""Upstream's YOLOv5-face code (CodeFormer's ``facelib/detection/yolov5face``, from the ``codeformer`` wheel on
PyPI, a test dependency) as the reference for parity tests, and seeded YOLOv5-face files made with it.

Only the yolov5face subpackage is imported: the wheel's ``facelib/__init__`` chain pulls in basicsr and
lpips, which these tests do not need, so the parent packages are bare namespace stand-ins.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import torch

VERSION = "0.0.11"  # the codeformer wheel read here (CodeFormer's code as of 2023-03)
# (depth, width) multiples of upstream's yolov5-face configs over the l topology; n has its own yaml
CSP_MULTIPLES = {"s": (0.33, 0.5), "m": (0.67, 0.75), "l": (1.0, 1.0)}


def upstream():
    """The reference modules (``yolo``, ``general``, ``datasets``) and the folder of its yaml configs, or None."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        root = Path(distribution("codeformer").locate_file("facelib"))
    except PackageNotFoundError:
        return None
    if not (root / "detection" / "yolov5face").is_dir():
        return None
    for name, path in (("facelib", root), ("facelib.detection", root / "detection")):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(path)]
            sys.modules[name] = package
    base = "facelib.detection.yolov5face"
    modules = types.SimpleNamespace(
        yolo=importlib.import_module(f"{base}.models.yolo"),
        general=importlib.import_module(f"{base}.utils.general"),
        datasets=importlib.import_module(f"{base}.utils.datasets"),
        configs=root / "detection" / "yolov5face" / "models",
    )
    return modules


def upstream_model(reference, size: str, tmp_dir: Path):
    """Upstream's ``Model`` for ``size`` (n, s, m, l): n and l from their yaml, s and m as l with upstream's
    depth and width multiples."""
    import warnings

    import yaml

    if size in ("n", "l"):
        path = reference.configs / f"yolov5{size}.yaml"
    else:
        config = yaml.safe_load((reference.configs / "yolov5l.yaml").read_text())
        config["depth_multiple"], config["width_multiple"] = CSP_MULTIPLES[size]
        path = tmp_dir / f"yolov5{size}.yaml"
        path.write_text(yaml.safe_dump(config))
    with warnings.catch_warnings():  # upstream calls torch.meshgrid without indexing=
        warnings.filterwarnings("ignore", message="torch.meshgrid")
        return reference.yolo.Model(cfg=str(path))


def smooth_noise(batch: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """RGB 0..1 images with structure at several scales (coarse noise upsampled plus fine noise), photo-like
    enough for random deep features to stay varied."""
    coarse = torch.rand(batch, 3, height // 16, width // 16, generator=generator)
    fine = torch.rand(batch, 3, height, width, generator=generator)
    up = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    return (0.8 * up + 0.2 * fine).clamp(0, 1)


def signal_images(seed: int = 0) -> torch.Tensor:
    """The two 320x448 images seeded files are calibrated on (scores spread from ~0 to ~1 there; that size
    needs no letterbox padding, so the network sees them as they are)."""
    return smooth_noise(2, 320, 448, torch.Generator().manual_seed(seed))


@torch.no_grad()
def give_signal(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Seeded weights that exercise every path as trained ones do: BatchNorm statistics measured on images
    (as training leaves them: activations stay alive through the 50-odd layers, and folding the norms
    matters), affine BatchNorm parameters away from identity, and heads whose outputs vary across cells
    with scores from ~0 to ~1 (so thresholds, decoding and NMS run on distinct boxes)."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.copy_(1 + 0.2 * torch.randn(module.num_features, generator=generator))
            module.bias.copy_(0.1 * torch.randn(module.num_features, generator=generator))
            module.momentum = None  # running statistics = the statistics of the batch below
            module.reset_running_stats()
    model.train()(signal_images(seed))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):  # no near-constant channel that would amplify rounding
            module.running_var.clamp_(min=0.1 * float(module.running_var.mean()))
    # Scale each head output so it varies across cells as a trained head's does: random deep features reach
    # the heads nearly constant, which would make every score tie.
    detect = model.model[-1]
    inputs = {}
    hooks = [conv.register_forward_hook(lambda m, i, o: inputs.__setitem__(m, i[0])) for conv in detect.m]
    model.eval()(signal_images(seed))
    for hook in hooks:
        hook.remove()
    for conv in detect.m:
        features = inputs[conv].permute(0, 2, 3, 1).reshape(-1, conv.in_channels)
        centred = features - features.mean(0)
        out = centred @ conv.weight.flatten(1).t()  # [cells, outputs]
        conv.weight.div_(out.std(0).clamp(min=1e-6).view(-1, 1, 1, 1))
        bias = torch.zeros(detect.na, detect.no)
        spread = torch.ones(detect.na, detect.no)
        bias[:, 4], bias[:, 15], spread[:, 4], spread[:, 15] = -1.0, 1.0, 2.0, 2.0  # scores from ~0 to ~1
        conv.weight.mul_(spread.view(-1, 1, 1, 1))
        conv.bias.copy_(bias.view(-1) - (features.mean(0) @ conv.weight.flatten(1).t()))
    return model.eval()


def seeded_yolov5face_file(reference, size: str, path: Path, seed: int = 0) -> Path:
    """A YOLOv5-face file in upstream's layout (``torch.save`` of the model's state dict, as CodeFormer's
    yolov5*-face.pth are), with seeded weights that carry signal."""
    torch.manual_seed(seed)
    model = give_signal(upstream_model(reference, size, path.parent), seed)
    torch.save(model.state_dict(), path)
    return path
