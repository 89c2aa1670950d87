"""Loader nodes: GFPGAN model, face detector, face parser."""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
from comfy_api.v0_0_2 import io

import comfy.model_management as model_management

from ..face_pipeline.detect import load_detector
from ..face_pipeline.parse import load_parser
from ..gfpgan_arch import DTYPE_CHOICES, LoadedGFPGAN, compute_dtype, load_gfpgan, network_from_state_dict
from .compat import schema_extras
from .common import (
    CATEGORY,
    DETECTION_FOLDER,
    GFPGAN_FOLDER,
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


def _dtype(choice: str) -> torch.dtype:
    return compute_dtype(choice, model_management.should_use_bf16(model_management.get_torch_device()))


class LoadGFPGANModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="GFPGANModelLoader",
            display_name="Load GFPGAN Model",
            category=CATEGORY,
            **schema_extras(search_aliases=["gfpgan", "load gfpgan", "face restore model", "facerestore model"]),
            description="Loads GFPGAN weights (v1.2/v1.3/v1.4 or the original v1) from models/facerestore_models "
            "or models/gfpgan. The network is detected from the file; .pth files are read without unpickling code.",
            inputs=[
                io.Combo.Input("model_name", options=weight_files(GFPGAN_FOLDER),
                               tooltip="GFPGAN weights file, e.g. GFPGANv1.4.pth or a converted .safetensors"),
                dtype_input(),
            ],
            outputs=[GFPGANModel.Output(display_name="gfpgan_model", tooltip="The loaded GFPGAN network")],
        )

    @classmethod
    def validate_inputs(cls, model_name: str) -> bool | str:
        # Runs when the prompt is queued: a missing file stops it before anything is computed.
        return missing_model_message(GFPGAN_FOLDER, model_name, "GFPGANv1Clean") or True

    @classmethod
    def fingerprint_inputs(cls, model_name: str, **_) -> tuple | None:
        return file_fingerprint(GFPGAN_FOLDER, model_name)  # a file replaced on disk is loaded again

    @classmethod
    def execute(cls, model_name: str, dtype: str) -> io.NodeOutput:
        return _load_from_folder(GFPGAN_FOLDER, model_name, "GFPGANv1Clean", partial(load_gfpgan, dtype=_dtype(dtype)))


class LoadFaceDetector(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="GFPGANFaceDetectorLoader",
            display_name="Load Face Detector (RetinaFace)",
            category=CATEGORY,
            **schema_extras(search_aliases=["retinaface", "face detector", "face detection model", "facexlib"]),
            description="Loads RetinaFace weights (detection_Resnet50_Final.pth or detection_mobilenet0.25_Final.pth) "
            "from models/facedetection or models/facexlib.",
            inputs=[
                io.Combo.Input("detector_name", options=weight_files(DETECTION_FOLDER),
                               tooltip="RetinaFace weights: ResNet-50 (accurate) or MobileNet-0.25 (fast)"),
            ],
            outputs=[FaceDetector.Output(display_name="face_detector", tooltip="The loaded face detector")],
        )

    @classmethod
    def validate_inputs(cls, detector_name: str) -> bool | str:
        return missing_model_message(DETECTION_FOLDER, detector_name, "RetinaFace") or True

    @classmethod
    def fingerprint_inputs(cls, detector_name: str, **_) -> tuple | None:
        return file_fingerprint(DETECTION_FOLDER, detector_name)  # a file replaced on disk is loaded again

    @classmethod
    def execute(cls, detector_name: str) -> io.NodeOutput:
        return _load_from_folder(DETECTION_FOLDER, detector_name, "RetinaFace", load_detector)


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
        if architecture != "GFPGAN":
            raise ValueError(f"this upscale model is {architecture or 'not a spandrel model'}, not GFPGAN")
        network, arch, config = network_from_state_dict(
            {k: v.detach().cpu() for k, v in upscale_model.model.state_dict().items()}, source="upscale model"
        )
        network.to(model_management.unet_offload_device(), _dtype(dtype))
        return io.NodeOutput(patch(network, LoadedGFPGAN(network, arch, config, None, None, "")))
