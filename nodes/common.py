"""Shared plumbing for the nodes: ComfyUI folders, tensor layouts, devices, memory, progress."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

import torch

import comfy.model_management as model_management
import comfy.utils
from comfy_api.v0_0_2 import ui
import folder_paths
from comfy.model_patcher import ModelPatcher

from ..face_pipeline.restore import default_chunk_size
from ..model_files.releases import FACE_DETECTION, FACE_RESTORATION, hint_releases
from .compat import free_memory, is_out_of_memory

GFPGAN_FOLDER = "facerestore_models"  # shared with other face-restore packs
DETECTION_FOLDER = "facedetection"
WEIGHT_SUFFIXES = (".pth", ".safetensors", ".ckpt", ".pt")
RESTORER_SUFFIXES = (*WEIGHT_SUFFIXES, ".onnx")  # ONNX files as ReActor and FaceFusion keep them
CATEGORY = "image/face restoration"


def register_model_folders() -> None:
    """Add our model folders without disturbing paths users set in extra_model_paths.yaml."""
    models = folder_paths.models_dir
    for key, folder in (
        (GFPGAN_FOLDER, "facerestore_models"),
        (GFPGAN_FOLDER, "gfpgan"),
        (GFPGAN_FOLDER, "face_restoration"),  # lucak5s/comfyui_gfpgan's
        (DETECTION_FOLDER, "facedetection"),
        (DETECTION_FOLDER, "facexlib"),
        (DETECTION_FOLDER, "face_detection"),  # lucak5s/comfyui_gfpgan's
    ):
        folder_paths.add_model_folder_path(key, os.path.join(models, folder))


def weight_files(folder_key: str, suffixes: tuple[str, ...] = WEIGHT_SUFFIXES) -> list[str]:
    """Weight files listed in a ComfyUI model folder."""
    return [f for f in folder_paths.get_filename_list(folder_key) if f.lower().endswith(suffixes)]


def missing_model_message(folder_key: str, name: str, arch: str) -> str | None:
    """None if ``name`` is a file in the model folder, else what to do: the folders and the official URLs.

    ``arch`` is a release family ("ParseNet"), ``releases.FACE_RESTORATION`` (the recommended file of every
    face-restoration family) or ``releases.FACE_DETECTION`` (every file of every detector family)."""
    if name and folder_paths.get_full_path(folder_key, name):
        return None
    folders = ", ".join(folder_paths.get_folder_paths(folder_key))
    several_families = arch in (FACE_RESTORATION, FACE_DETECTION)  # each file then says its family
    hint = "; ".join(
        f"{r.file_name} from {r.url}" + (f" ({r.arch}{', non-commercial' if r.non_commercial else ''})"
                                          if several_families else "")
        for r in hint_releases(arch)
    )
    return (
        f"model file {name!r} not found. Put it in one of: {folders}. Official files: {hint}. "
        f"Nothing is downloaded automatically; `comfyui-gfpgan download NAME` fetches one explicitly "
        f"(`comfyui-gfpgan download --list` lists every known file)."
    )


def resolve_model_path(folder_key: str, name: str, arch: str) -> str:
    """Full path of a listed model file, or an error that says where to put it and where to get it."""
    message = missing_model_message(folder_key, name, arch)
    if message:
        raise FileNotFoundError(message)
    return folder_paths.get_full_path(folder_key, name)


def file_fingerprint(folder_key: str, name: str) -> tuple | None:
    """What changes when a model file is replaced on disk: its path, size and modification time.

    A loader's ``fingerprint_inputs``: ComfyUI runs the loader again (instead of reusing its
    cached model) when this differs from the last run. None when the file is missing.
    """
    path = folder_paths.get_full_path(folder_key, name) if name else None
    if not path or not os.path.isfile(path):
        return None
    stat = os.stat(path)
    return path, stat.st_size, stat.st_mtime_ns


@dataclass
class PatchedModel:
    """A model managed by ComfyUI's model management, plus the object the pipeline drives.

    ``info`` is a FaceRestorer, FaceDetector or FaceParser; ``patcher`` wraps its torch module
    (None for a model that runs outside torch, as an ONNX file does: onnxruntime places it itself).
    """

    patcher: ModelPatcher | None
    info: Any = None


def load_on_device(*models: PatchedModel | None) -> None:
    """Put every model a node needs on ComfyUI's compute device, in one ``load_models_gpu`` call.

    One call, so that loading a later model cannot evict an earlier one; fully, as core's
    upscaler does, because a partial load leaves plain modules' weights on the offload device.
    ``None`` (an optional model not given) is skipped.
    """
    present = [model for model in models if model is not None and model.patcher is not None]
    model_management.load_models_gpu([model.patcher for model in present], force_full_load=True)
    for model in present:
        _ensure_on_load_device(model.patcher)


def _ensure_on_load_device(patcher: ModelPatcher) -> None:
    device = patcher.load_device
    tensors = [*patcher.model.parameters(), *patcher.model.buffers()]
    if all(t.device == device for t in tensors):
        return
    # Dynamic VRAM (on by default in late 2026) can leave weights of modules not built from
    # ComfyUI's ops where they were even after a full load; core's upscaler moves them itself.
    patcher.model.to(device)
    stray = sorted({str(t.device) for t in [*patcher.model.parameters(), *patcher.model.buffers()]} - {str(device)})
    if stray:
        raise RuntimeError(f"{type(patcher.model).__name__} did not move to {device} (weights left on {', '.join(stray)})")


def patch(module: torch.nn.Module | None, info: Any) -> PatchedModel:
    if module is None:
        return PatchedModel(None, info)
    return PatchedModel(
        ModelPatcher(module, load_device=model_management.get_torch_device(),
                     offload_device=model_management.unet_offload_device()),
        info,
    )


def progress_callback(total: int) -> Callable[[int, int], None]:
    """A callback for the pipeline that drives ComfyUI's progress bar and honours Cancel."""
    bar = comfy.utils.ProgressBar(total)

    def report(done: int, _total: int) -> None:
        bar.update_absolute(done, total)
        model_management.throw_exception_if_processing_interrupted()

    return report


def to_bchw(image: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE ``[B,H,W,C]`` -> ``[B,C,H,W]`` (a view: never written to)."""
    if image.ndim != 4 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an IMAGE of shape [B,H,W,C] with 1, 3 or 4 channels, got {tuple(image.shape)}")
    return image.movedim(-1, 1)


def to_bhwc(image: torch.Tensor) -> torch.Tensor:
    return image.movedim(1, -1).contiguous().to(model_management.intermediate_device())


def on_compute_device(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` on ComfyUI's compute device if it fits there with room to spare, else where it is.

    Paste-back warps faces on the device of the restored crops; a long video's crops that do
    not fit stay on the CPU, and the frames themselves never move: only each face's window does,
    also for the colour correction's reference crops.
    """
    device = model_management.get_torch_device()
    if device.type == "cpu" or tensor.device == device:
        return tensor
    needed = 4 * tensor.numel() * tensor.element_size()  # the crops, masks and warp buffers
    return tensor.to(device) if needed < model_management.get_free_memory(device) else tensor


def face_chunk_size(model: PatchedModel) -> int:
    """Faces per network batch that fit in free memory (about 0.35 GB per 512 px face in fp32, GFP-GAN's;
    scaled by the crop's area for other sizes)."""
    restorer = model.info
    if restorer.device.type != "cuda" or model.patcher is None:
        return default_chunk_size(restorer.device)
    per_face = 0.35e9 * (0.5 if restorer.dtype == torch.bfloat16 else 1.0) * (restorer.crop_size / 512) ** 2
    free = free_memory(model.patcher, restorer.device)
    return int(max(1, min(32, free * 0.8 // per_face)))


T = TypeVar("T")
FRAME_CHUNKS = (16, 4, 1)  # frames on the device at a time: the pipeline's default, then smaller after out-of-memory
PREVIEW_FRAMES = 8  # frames a node shows on itself: each is written as a PNG, and a video has thousands


def preview_ui(images: torch.Tensor, node: type) -> Any:
    """The first frames of an IMAGE shown on the node itself (saved as temp PNGs, as core's Preview Image does)."""
    return ui.PreviewImage(images[:PREVIEW_FRAMES], cls=node)


def smaller_after_out_of_memory(attempts: Sequence[Callable[[], T]]) -> T:
    """The first attempt's result; after an out-of-memory error (as ComfyUI tells one), cached
    memory is freed and the next, smaller attempt runs. The last attempt's error propagates
    (so ComfyUI shows its own out-of-memory advice); every other error, and Cancel, at once."""
    for attempt in attempts[:-1]:
        try:
            return attempt()
        except Exception as error:  # Cancel is a BaseException from ComfyUI 0.38 on, an Exception before
            if not is_out_of_memory(error):
                raise
        model_management.soft_empty_cache()
    return attempts[-1]()
