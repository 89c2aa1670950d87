"""The all-in-one node: detect, restore and paste back in one step, with GFPGANer's defaults."""

from __future__ import annotations

from functools import partial

from comfy_api.v0_0_2 import io

from ..face_pipeline.detect import GFPGANER_MIN_EYE_DISTANCE
from ..face_pipeline.pipeline import PasteSettings, RestoreSettings, restore_faces_in_images
from .compat import schema_extras
from .common import (
    CATEGORY,
    FRAME_CHUNKS,
    face_chunk_size,
    load_on_device,
    progress_callback,
    smaller_after_out_of_memory,
    to_bchw,
)
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
            display_name="Face Restore All-in-One (GFPGAN)",
            category=CATEGORY,
            **schema_extras(search_aliases=[
                "face restore", "gfpgan", "restore faces", "face fix", "fix faces", "face enhance", "facerestore", "restore face",
            ]),
            description="Finds every face, restores it with GFPGAN (or any supported face restore model) and blends it "
            "back. The defaults reproduce the "
            "official GFPGANer result; images without faces pass through unchanged.",
            inputs=[
                io.Image.Input("image", tooltip="Images to restore faces in (RGB, RGBA or gray; alpha is kept)"),
                GFPGANModel.Input("gfpgan_model", tooltip="From Load Face Restore Model (any supported family)"),
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
        parser = face_parser if mask_type == "parsing" else None
        load_on_device(gfpgan_model, face_detector, parser)
        progress = progress_callback(image.shape[0])

        def run(frames_per_chunk: int, chunk_size: int):
            return restore_faces_in_images(
                to_bchw(image), gfpgan_model.info, face_detector.info, None if parser is None else parser.info,
                detect=detect,
                restore=RestoreSettings(fidelity=fidelity, noise=noise, seed=seed, chunk_size=chunk_size),
                paste=PasteSettings(mask=mask_type, feather=feather, color_correction=color_correction, blend=blend),
                targets=None if target_image is None else to_bchw(target_image),
                frames_per_chunk=frames_per_chunk, on_progress=progress,
            )

        chunk = face_chunk_size(gfpgan_model)
        result = smaller_after_out_of_memory([partial(run, n, chunk if n == FRAME_CHUNKS[0] else 1) for n in FRAME_CHUNKS])
        # The pipeline returns the frames in the input's [B,H,W,C] memory layout: no copy here for a long video.
        return io.NodeOutput(result.images.movedim(1, -1).contiguous(), result.masks)
