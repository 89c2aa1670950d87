"""The all-in-one node: detect, restore and paste back in one step, with GFPGANer's defaults."""

from __future__ import annotations

from comfy_api.v0_0_2 import io

from ..face_pipeline.detect import GFPGANER_MIN_EYE_DISTANCE
from ..face_pipeline.pipeline import PasteSettings, RestoreSettings, restore_faces_in_images
from .common import CATEGORY, face_chunk_size, progress_callback, to_bchw
from .faces import (
    detect_settings,
    detection_inputs,
    extra_detection_inputs,
    fidelity_input,
    noise_inputs,
    optional_paste_inputs,
    paste_inputs,
    paste_outputs,
    smoothing_input,
)
from .loaders import FaceDetector, GFPGANModel


class GFPGANFaceRestore(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="GFPGANFaceRestore",
            display_name="GFPGAN Face Restore",
            category=CATEGORY,
            description="Finds every face, restores it with GFPGAN and blends it back. The defaults reproduce the "
            "official GFPGANer result; images without faces pass through unchanged.",
            inputs=[
                io.Image.Input("image", tooltip="Images to restore faces in (RGB, RGBA or gray; alpha is kept)"),
                GFPGANModel.Input("gfpgan_model", tooltip="From Load GFPGAN Model"),
                FaceDetector.Input("face_detector", tooltip="From Load Face Detector"),
                fidelity_input(),
                *paste_inputs(),
                *detection_inputs(),
                *noise_inputs(),
                smoothing_input(),
                *optional_paste_inputs(),
                *extra_detection_inputs(),
            ],
            outputs=paste_outputs(),
        )

    @classmethod
    def execute(cls, image, gfpgan_model, face_detector, fidelity, blend, mask_type, feather, color_correction,
                threshold, selection, top_k, min_face_size, max_face_size, working_size, noise, seed,
                landmark_smoothing=0.0, target_image=None, face_parser=None,
                min_eye_distance=GFPGANER_MIN_EYE_DISTANCE, order="score", face_indices="") -> io.NodeOutput:
        detect = detect_settings(threshold, selection, top_k, min_face_size, max_face_size, working_size,
                                 landmark_smoothing, min_eye_distance, order, face_indices)
        if mask_type == "parsing" and face_parser is None:
            raise ValueError("mask_type 'parsing' needs a face parser (Load Face Parser)")
        network = gfpgan_model.on_device()
        face_detector.on_device()
        parser = None
        if face_parser is not None:
            face_parser.on_device()
            parser = face_parser.info
        parameter = next(network.parameters())
        result = restore_faces_in_images(
            to_bchw(image), network, face_detector.info, parser,
            detect=detect,
            restore=RestoreSettings(fidelity=fidelity, noise=noise, seed=seed,
                                    chunk_size=face_chunk_size(parameter.device, parameter.dtype)),
            paste=PasteSettings(mask=mask_type, feather=feather, color_correction=color_correction, blend=blend),
            targets=None if target_image is None else to_bchw(target_image),
            on_progress=progress_callback(image.shape[0]),
        )
        return io.NodeOutput(result.images.movedim(1, -1).contiguous(), result.masks)

