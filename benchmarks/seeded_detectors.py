"""Seeded detector files for timing the variants that have no trained weights offline (bench_detect.py).

RetinaFace ResNet-50 is ``RetinaFaceNet("resnet50")`` as initialised, its BatchNorm statistics measured on
the calibration images (as training leaves them: without, activations grow through the 50 layers until the
boxes overflow); YOLOv5-face n and l are tests/yolov5face_reference.py's seeded files. Random weights put
tens of thousands of anchors above a 0.97 threshold on a photo, where a trained detector puts a few dozen,
and the time would then be NMS's, not the network's (ResNet-50, its statistics measured, puts none). So each
file's face score is shifted by one constant (in the class heads' bias) until at most ``CANDIDATES`` anchors
pass on each calibration image, that many on one. Neither changes the amount of arithmetic the network does.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

CANDIDATES = 40  # anchors above the threshold on the calibration image, as a trained detector's faces give


def _shift_for(count_above, target: int) -> float:
    """The smallest shift of the score logits (subtracted: > 0 lowers the scores) at which
    ``count_above(shift)`` is at most ``target``."""
    low, high = -1.0, 1.0
    while count_above(high) > target:  # seeded heads can reach logits in the thousands on photos
        low, high = high, high * 2
    while count_above(low) <= target and low > -1e6:  # or too few anchors pass: raise the scores
        low, high = low * 2, low
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if count_above(middle) > target else (low, middle)
    return high


@torch.inference_mode()
def retinaface_resnet50_file(path: Path, images: list[torch.Tensor], threshold: float, seed: int = 0) -> Path:
    """A seeded RetinaFace ResNet-50 (.safetensors, facexlib's keys), calibrated on ``images`` (RGB 0..1)."""
    from safetensors.torch import save_file

    from comfyui_gfpgan.face_detectors.retinaface import to_network_input
    from comfyui_gfpgan.face_detectors.retinaface_net import RetinaFaceNet

    torch.manual_seed(seed)
    network = RetinaFaceNet("resnet50")
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # running statistics = the average over the images below
            module.reset_running_stats()
    network.train()
    for image in images:
        network.features(to_network_input(image))
    network.eval()
    limit = torch.logit(torch.tensor(threshold)).item()
    shift = -math.inf
    for image in images:
        features = network.features(to_network_input(image))
        logits = torch.cat([head(f) for head, f in zip(network.ClassHead, features)], dim=1)  # [B, A, 2]
        margin = (logits[..., 1] - logits[..., 0]).flatten()  # softmax's face score = sigmoid(margin)
        shift = max(shift, _shift_for(lambda s: int((margin - s > limit).sum()), CANDIDATES))
    for head in network.ClassHead:
        head.conv1x1.bias[1::2] -= shift  # the face logit of each anchor
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(path))
    return path


@torch.inference_mode()
def yolov5face_file(size: str, path: Path, images: list[torch.Tensor], threshold: float) -> Path | None:
    """A seeded YOLOv5-face ``size`` file (upstream's layout), calibrated on ``images``; None without the
    reference package (``codeformer``)."""
    from yolov5face_reference import seeded_yolov5face_file, upstream

    from comfyui_gfpgan.face_detectors import load_detector
    from comfyui_gfpgan.face_detectors.yolov5face import letterbox

    reference = upstream()
    if reference is None:
        return None
    seeded_yolov5face_file(reference, size, path)
    detector, shift = load_detector(path), -math.inf
    for image in images:
        raw = torch.cat([m.flatten(0, -2) for m in detector.raw_outputs(letterbox(image)[0])])  # [cells, 16]
        objectness, face = raw[:, 4], torch.sigmoid(raw[:, 15])  # score = sigmoid(objectness) x sigmoid(face)
        shift = max(shift, _shift_for(lambda s: int((torch.sigmoid(objectness - s) * face > threshold).sum()),
                                      CANDIDATES))
    state_dict = torch.load(path, weights_only=True)
    last = max(int(k.split(".")[1]) for k in state_dict if k.startswith("model."))
    for key in [k for k in state_dict if k.startswith(f"model.{last}.m.") and k.endswith(".bias")]:
        state_dict[key].view(-1, 16)[:, 4] -= shift  # each anchor's objectness
    torch.save(state_dict, path)
    return path
