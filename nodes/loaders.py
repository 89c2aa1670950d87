"""Loader nodes: GFPGAN model, face detector, face parser."""

from __future__ import annotations

import logging
from typing import Callable

import torch
from comfy_api.v0_0_2 import io

import comfy.model_management as model_management

from ..face_pipeline.detect import load_detector
from ..face_pipeline.parse import load_parser
from ..face_restorers import DTYPE_CHOICES, FaceRestorer, compute_dtype, load_face_restorer, restorer_from_state_dict
from ..face_restorers.onnx_graph import is_onnx_file
from ..model_files.releases import FACE_DETECTION, FACE_RESTORATION
from .compat import schema_extras
from .common import (
    CATEGORY,
    DETECTION_FOLDER,
    GFPGAN_FOLDER,
    RESTORER_SUFFIXES,
    file_fingerprint,
    missing_model_message,
    patch,
    resolve_model_path,
    weight_files,
)

GFPGANModel = io.Custom("GFPGAN_MODEL")
FaceDetector = io.Custom("FACE_DETECTOR")
FaceParser = io.Custom("FACE_PARSER")


def dtype_input():
    return io.Combo.Input("dtype", options=list(DTYPE_CHOICES), default="auto",
                          tooltip="auto = bf16 where ComfyUI says the device supports it, else fp32. "
                          "fp16 is not offered: GFPGAN can overflow it.")


def _load_from_folder(folder: str, name: str, arch: str, load: Callable) -> io.NodeOutput:
    """Load a listed model file onto ComfyUI's offload device, wrapped for its model management."""
    loaded = load(resolve_model_path(folder, name, arch), device=model_management.unet_offload_device())
    return io.NodeOutput(patch(loaded.network, loaded))


def _load_restorer(name: str, dtype: str) -> io.NodeOutput:
    """A face restore model of any family; a torch network on the offload device for ComfyUI's model management
    to move, an onnxruntime session (which nothing moves later) made for the compute device at once."""
    path = resolve_model_path(GFPGAN_FOLDER, name, FACE_RESTORATION)
    offload = model_management.unet_offload_device()
    device = model_management.get_torch_device() if is_onnx_file(path) else offload
    restorer = load_face_restorer(path, device=device, dtype=_dtype(dtype))
    if restorer.module is not None:
        restorer.to(offload)  # a GFP-GAN ONNX file mapped into our network is a torch module again
    log_knobs(restorer)
    return io.NodeOutput(patch(restorer.module, restorer))


def log_knobs(restorer: FaceRestorer) -> None:
    """Say once, when a model is loaded, what the restore nodes' fidelity widget does with it."""
    family = restorer.family
    if family.fidelity is None:
        logging.warning("[GFPGAN] %s: %s; the restore nodes' fidelity is ignored for it",
                        restorer.path or restorer.arch, family.no_fidelity_note)
    elif family.default_fidelity != 1.0:
        logging.info("[GFPGAN] %s: fidelity drives %s's %s; upstream's default is %s (the frontend sets it when the "
                     "file is picked; a prompt from the API gets the value it sends)",
                     restorer.path or restorer.arch, family.name, family.fidelity, family.default_fidelity)


def _dtype(choice: str) -> torch.dtype:
    return compute_dtype(choice, model_management.should_use_bf16(model_management.get_torch_device()))


class LoadGFPGANModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="GFPGANModelLoader",
            display_name="Load Face Restore Model",
            category=CATEGORY,
            **schema_extras(search_aliases=["gfpgan", "load gfpgan", "face restore model", "facerestore model"]),
            description="Loads a face restoration model from models/facerestore_models or models/gfpgan: GFPGAN "
            "(v1.2/v1.3/v1.4, the original v1) and the other families the README lists. The family and network are "
            "detected from the file's content; .pth files are read without unpickling code.",
            inputs=[
                io.Combo.Input("model_name", options=weight_files(GFPGAN_FOLDER, RESTORER_SUFFIXES),
                               tooltip="A face restoration file, e.g. GFPGANv1.4.pth, codeformer-v0.1.0.pth or a "
                               ".safetensors / .onnx form of one"),
                dtype_input(),
            ],
            outputs=[GFPGANModel.Output(display_name="gfpgan_model", tooltip="The loaded GFPGAN network")],
        )

    @classmethod
    def validate_inputs(cls, model_name: str) -> bool | str:
        # Runs when the prompt is queued: a missing file stops it before anything is computed.
        return missing_model_message(GFPGAN_FOLDER, model_name, FACE_RESTORATION) or True

    @classmethod
    def fingerprint_inputs(cls, model_name: str, **_) -> tuple | None:
        return file_fingerprint(GFPGAN_FOLDER, model_name)  # a file replaced on disk is loaded again

    @classmethod
    def execute(cls, model_name: str, dtype: str) -> io.NodeOutput:
        return _load_restorer(model_name, dtype)


class LoadFaceDetector(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="GFPGANFaceDetectorLoader",
            display_name="Load Face Detector (RetinaFace / YOLOv5-face)",
            category=CATEGORY,
            **schema_extras(search_aliases=["retinaface", "yolo", "yolov5", "yolov5-face", "face detector",
                                            "face detection model", "facexlib"]),
            description="Loads a face detector from models/facedetection or models/facexlib: RetinaFace "
            "(detection_Resnet50_Final.pth or detection_mobilenet0.25_Final.pth, facexlib's) or YOLOv5-face "
            "(yolov5l-face.pth or yolov5n-face.pth, CodeFormer's). The family and size are told from the file's "
            "content; .pth files are read without unpickling code.",
            inputs=[
                io.Combo.Input("detector_name", options=weight_files(DETECTION_FOLDER),
                               tooltip="A detector file: RetinaFace ResNet-50 (GFPGANer's) or MobileNet-0.25 (fast), "
                               "or YOLOv5-face l or n (facerestore_cf's and ReActor's YOLOv5l / YOLOv5n)"),
            ],
            outputs=[FaceDetector.Output(display_name="face_detector", tooltip="The loaded face detector")],
        )

    @classmethod
    def validate_inputs(cls, detector_name: str) -> bool | str:
        return missing_model_message(DETECTION_FOLDER, detector_name, FACE_DETECTION) or True

    @classmethod
    def fingerprint_inputs(cls, detector_name: str, **_) -> tuple | None:
        return file_fingerprint(DETECTION_FOLDER, detector_name)  # a file replaced on disk is loaded again

    @classmethod
    def execute(cls, detector_name: str) -> io.NodeOutput:
        return _load_from_folder(DETECTION_FOLDER, detector_name, FACE_DETECTION, load_detector)


class LoadFaceParser(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="GFPGANFaceParserLoader",
            display_name="Load Face Parser (ParseNet / BiSeNet)",
            category=CATEGORY,
            **schema_extras(search_aliases=["parsenet", "bisenet", "face parsing", "face parser"]),
            description="Loads facexlib face-parsing weights (parsing_parsenet.pth or parsing_bisenet.pth; the network "
            "is told from the file) from models/facedetection or models/facexlib, for blend masks that follow the "
            "face outline.",
            inputs=[
                io.Combo.Input("parser_name", options=weight_files(DETECTION_FOLDER),
                               tooltip="Face-parsing weights: parsing_parsenet.pth (as GFPGANer) or parsing_bisenet.pth"),
            ],
            outputs=[FaceParser.Output(display_name="face_parser", tooltip="The loaded face parser")],
        )

    @classmethod
    def validate_inputs(cls, parser_name: str) -> bool | str:
        return missing_model_message(DETECTION_FOLDER, parser_name, "ParseNet") or True

    @classmethod
    def fingerprint_inputs(cls, parser_name: str, **_) -> tuple | None:
        return file_fingerprint(DETECTION_FOLDER, parser_name)  # a file replaced on disk is loaded again

    @classmethod
    def execute(cls, parser_name: str) -> io.NodeOutput:
        return _load_from_folder(DETECTION_FOLDER, parser_name, "ParseNet", load_parser)


# spandrel's ids of the face restorers whose state dicts (official keys) our families read
SPANDREL_FACE_RESTORERS = ("GFPGAN", "CodeFormer", "RestoreFormer")


class GFPGANFromUpscaleModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="GFPGANFromUpscaleModel",
            display_name="GFPGAN Model from Upscale Model",
            category=CATEGORY,
            **schema_extras(search_aliases=["gfpgan", "upscale model to gfpgan", "spandrel gfpgan"]),
            description="Uses a GFPGAN file loaded with the core Load Upscale Model node (models/upscale_models) "
            "as a GFPGAN_MODEL for these nodes.",
            inputs=[
                io.UpscaleModel.Input("upscale_model", tooltip="From Load Upscale Model, holding a GFPGAN file"),
                dtype_input(),
            ],
            outputs=[GFPGANModel.Output(display_name="gfpgan_model", tooltip="The GFPGAN network")],
        )

    @classmethod
    def execute(cls, upscale_model, dtype: str) -> io.NodeOutput:
        architecture = getattr(getattr(upscale_model, "architecture", None), "id", None)
        if architecture not in SPANDREL_FACE_RESTORERS:
            raise ValueError(f"this upscale model is {architecture or 'not a spandrel model'}, not a face restorer "
                             f"({', '.join(SPANDREL_FACE_RESTORERS)})")
        restorer = restorer_from_state_dict(
            {k: v.detach().cpu() for k, v in upscale_model.model.state_dict().items()}, source="upscale model"
        )
        restorer.to(model_management.unet_offload_device(), _dtype(dtype))
        log_knobs(restorer)
        return io.NodeOutput(patch(restorer.module, restorer))
