"""Modular nodes: detect faces, restore crops, paste faces back."""

from __future__ import annotations

from functools import partial

from comfy_api.v0_0_2 import io

from ..face_pipeline.detect import FACE_ORDERS, GFPGANER_MIN_EYE_DISTANCE, SELECTION_MODES
from ..face_pipeline.parse import parse_face_masks
from ..face_pipeline.paste import MASK_MODES, paste_faces
from ..face_pipeline.pipeline import DetectSettings, as_rgb, find_faces_in_frames
from ..face_pipeline.preview import draw_faces
from ..face_pipeline.restore import NOISE_MODES, restore_crops
from .compat import schema_extras, seed_control
from .common import (
    CATEGORY,
    FRAME_CHUNKS,
    face_chunk_size,
    load_on_device,
    on_compute_device,
    preview_ui,
    progress_callback,
    smaller_after_out_of_memory,
    to_bchw,
    to_bhwc,
)
from .loaders import FaceDetector, FaceParser, GFPGANModel

Faces = io.Custom("FACES")



def detection_inputs() -> list:
    """Widgets shared by the detect node and the all-in-one node (same order in both)."""
    return [
        io.Float.Input("threshold", default=0.0, min=0.0, max=0.99, step=0.01,
                       tooltip="Minimum detection confidence (0 = the detector's own: 0.97 for RetinaFace, "
                       "GFPGANer's; 0.7 for YOLOv5-face, upstream's, as its scores run lower)"),
        io.Combo.Input("selection", options=list(SELECTION_MODES), default="all",
                       tooltip="Which faces to restore per image: all, the largest, the one nearest the centre, "
                       "or the top-k by confidence"),
        io.Int.Input("top_k", default=1, min=1, max=64, tooltip="How many faces 'top_k' keeps per image"),
        io.Int.Input("min_face_size", default=0, min=0, max=8192,
                     tooltip="Ignore faces whose box is smaller than this many pixels (0 = no limit)"),
        io.Int.Input("max_face_size", default=0, min=0, max=8192,
                     tooltip="Ignore faces whose box is larger than this many pixels (0 = no limit)"),
        io.Int.Input("working_size", default=0, min=0, max=8192, step=32,
                     tooltip="Detect on a copy whose short side is at most this (0 = full size, as GFPGANer; "
                     "else at least 64; smaller is faster but misses small faces); never upscales"),
    ]


def extra_detection_inputs() -> list:
    """Detection widgets added after the first release: optional and after every older widget of each node, so
    saved workflows (UI widget lists and API prompts) load unchanged."""
    return [
        io.Float.Input("min_eye_distance", default=GFPGANER_MIN_EYE_DISTANCE, min=0.0, max=1024.0, step=0.01,
                       optional=True, tooltip="Ignore faces whose eyes are closer than this many pixels: side views "
                       "and tiny faces (GFPGANer uses 5)"),
        io.Combo.Input("order", options=list(FACE_ORDERS), default="score", optional=True,
                       tooltip="How each image's faces are ordered, for face_indices and the crops' order"),
        io.String.Input("face_indices", default="", optional=True,
                        tooltip="Keep only these positions in that order: 0 | 0,2 | 1-3 (empty = all); positions "
                        "beyond an image's faces select nothing there"),
    ]


def detect_settings(threshold, selection, top_k, min_face_size, max_face_size, working_size, landmark_smoothing,
                    min_eye_distance, order, face_indices) -> DetectSettings:
    """The detection widgets as settings (they check themselves; a bad value is a one-line error); a threshold
    of 0 is the detector's own."""
    return DetectSettings(threshold=threshold or None, selection=selection, top_k=top_k, min_face_size=min_face_size,
                          max_face_size=max_face_size, working_size=working_size, smoothing=landmark_smoothing,
                          min_eye_distance=min_eye_distance, order=order, face_indices=face_indices)


def smoothing_input():
    return io.Float.Input("landmark_smoothing", default=0.0, min=0.0, max=0.95, step=0.01,
                          tooltip="For video batches: how much each face's landmarks follow the previous frame's "
                          "(0 = off); steadies jittering faces")


class DetectFaces(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="GFPGANDetectFaces",
            display_name="Detect Faces (GFPGAN)",
            category=CATEGORY,
            **schema_extras(search_aliases=["detect faces", "face detection", "find faces", "retinaface", "yolov5", "yolo",
                                            "face crop"]),
            description="Finds faces with the loaded detector (RetinaFace or YOLOv5-face) and crops each to the FFHQ "
            "alignment face restorers expect: 512 px, or the size of the face restore model given.",
            inputs=[
                io.Image.Input("image", tooltip="Images to search for faces"),
                FaceDetector.Input("face_detector", tooltip="From Load Face Detector"),
                *detection_inputs(),
                smoothing_input(),
                *extra_detection_inputs(),
                GFPGANModel.Input("gfpgan_model", optional=True,
                                  tooltip="Optional: make the crops this face restore model's size (e.g. 1024 px for "
                                  "GPEN-BFR-1024); without it they are 512 px"),
            ],
            outputs=[
                Faces.Output(display_name="faces", tooltip="Where each face is: boxes, landmarks and alignment"),
                io.Image.Output(display_name="face_crops",
                                tooltip="Aligned square face crops (512 px or the model's size), one per face "
                                "(empty if none found)"),
                io.Image.Output(display_name="preview", tooltip="The images with boxes and landmarks drawn"),
            ],
        )

    @classmethod
    def execute(cls, image, face_detector, threshold, selection, top_k, min_face_size, max_face_size,
                working_size, landmark_smoothing=0.0, min_eye_distance=GFPGANER_MIN_EYE_DISTANCE, order="score",
                face_indices="", gfpgan_model=None) -> io.NodeOutput:
        settings = detect_settings(threshold, selection, top_k, min_face_size, max_face_size, working_size,
                                   landmark_smoothing, min_eye_distance, order, face_indices)
        crop_size = 512 if gfpgan_model is None else gfpgan_model.info.crop_size
        load_on_device(face_detector)
        frames = to_bchw(image)
        progress = progress_callback(frames.shape[0])
        faces, crops = smaller_after_out_of_memory([
            partial(find_faces_in_frames, frames, face_detector.info, settings, crop_size, frames_per_chunk=n,
                    on_progress=progress)
            for n in FRAME_CHUNKS
        ])
        preview = to_bhwc(draw_faces(as_rgb(frames), faces))
        return io.NodeOutput(faces, to_bhwc(crops), preview, ui=preview_ui(preview, cls))


class RestoreFaces(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="GFPGANRestoreFaces",
            display_name="Restore Face Crops (GFPGAN)",
            category=CATEGORY,
            **schema_extras(search_aliases=[
                "gfpgan", "restore faces", "face restore", "restore face crops", "face fix",
            ]),
            description="Runs the face restore model (GFPGAN or another family) on aligned face crops of its size, "
            "in batches on ComfyUI's device.",
            inputs=[
                GFPGANModel.Input("gfpgan_model", tooltip="From Load Face Restore Model (any supported family)"),
                io.Image.Input("face_crops", tooltip="Aligned face crops, e.g. from Detect Faces"),
                fidelity_input(),
                *noise_inputs(),
            ],
            outputs=[io.Image.Output(display_name="restored_crops", tooltip="Restored crops, same order and size")],
        )

    @classmethod
    def execute(cls, gfpgan_model, face_crops, fidelity, noise, seed) -> io.NodeOutput:
        load_on_device(gfpgan_model)
        crops = to_bchw(face_crops)
        if crops.shape[0] == 0:
            return io.NodeOutput(face_crops.clone())
        if crops.shape[1] != 3:
            raise ValueError(f"face crops must be RGB, got {crops.shape[1]} channels")
        size = gfpgan_model.info.crop_size
        if crops.shape[-2:] != (size, size):
            raise ValueError(crop_size_message(size, tuple(crops.shape[-2:])))
        progress = progress_callback(crops.shape[0])
        restored = smaller_after_out_of_memory([
            partial(restore_crops, gfpgan_model.info, crops, fidelity=fidelity, noise=noise, seed=seed,
                    chunk_size=chunk, on_chunk=progress)
            for chunk in (face_chunk_size(gfpgan_model), 1)
        ])
        return io.NodeOutput(to_bhwc(restored))


def crop_size_message(size: int, got: tuple[int, int]) -> str:
    """Why crops of size ``got`` do not fit a network restoring ``size`` px faces, and what to do."""
    if size == 512:
        return f"face crops must be 512x512 (use Detect Faces), got {got[1]}x{got[0]}"
    return (f"this face restore model restores {size}x{size} face crops, got {got[1]}x{got[0]}; connect the model "
            f"to Detect Faces' gfpgan_model input so it crops at {size} px, or use Face Restore All-in-One (GFPGAN), which aligns "
            f"the faces at the model's size")


def paste_inputs() -> list:
    return [
        io.Float.Input("blend", default=1.0, min=0.0, max=1.0, step=0.01,
                       tooltip="Visibility of the restored faces (0 = original, 1 = fully restored)"),
        io.Combo.Input("mask_type", options=list(MASK_MODES), default="feathered",
                       tooltip="feathered: soft square-ish edge scaled to the face; parsing: follows the face outline "
                       "(needs a face parser)"),
        io.Float.Input("feather", default=1.0, min=0.0, max=4.0, step=0.01,
                       tooltip="Width of the soft edge, relative to the default (0 = hard edge)"),
        io.Boolean.Input("color_correction", default=False,
                         tooltip="Match the restored faces' colours to the originals"),
    ]


def fidelity_input():
    return io.Float.Input("fidelity", default=1.0, min=0.0, max=1.0, step=0.01,
                          tooltip="How strongly the input face steers the result, per model family. GFPGAN: the "
                          "CS-SFT weight (1 = official output; lower leans on the face prior). CodeFormer: its w "
                          "(1 = closest to the input; picking a CodeFormer model sets upstream's 0.5 here unless you "
                          "changed the value). RestoreFormer, RestoreFormer++, GPEN and ONNX files without a weight "
                          "input have no such knob: ignored (the log says so)")


def noise_inputs() -> list:
    return [
        io.Combo.Input("noise", options=list(NOISE_MODES), default="fixed",
                       tooltip="fixed: the model's stored noise (deterministic); seeded: fresh noise from seed"),
        io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFF, control_after_generate=seed_control(),
                     tooltip="Noise seed for 'seeded'"),
    ]


def optional_paste_inputs() -> list:
    return [
        io.Image.Input("target_image", optional=True,
                       tooltip="Optional: a resized (e.g. upscaled) copy of image to paste into instead"),
        FaceParser.Input("face_parser", optional=True, tooltip="Needed for mask_type 'parsing'"),
    ]


def paste_outputs() -> list:
    return [
        io.Image.Output(display_name="image", tooltip="Images with the restored faces"),
        io.Mask.Output(display_name="face_mask", tooltip="Where faces were blended in (0..1)"),
    ]


class PasteFaces(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="GFPGANPasteFaces",
            display_name="Paste Faces Back (GFPGAN)",
            category=CATEGORY,
            **schema_extras(search_aliases=["paste faces", "face paste", "blend faces back", "gfpgan"]),
            description="Warps restored crops back into the images and blends them in. Give an upscaled copy as "
            "target_image to detect on the small image and paste into the big one.",
            inputs=[
                io.Image.Input("image", tooltip="The images the faces were detected in"),
                Faces.Input("faces", tooltip="From Detect Faces"),
                io.Image.Input("restored_crops", tooltip="Restored crops, same order as the faces"),
                *paste_inputs(),
                *optional_paste_inputs(),
            ],
            outputs=paste_outputs(),
        )

    @classmethod
    def execute(cls, image, faces, restored_crops, blend, mask_type, feather, color_correction,
                target_image=None, face_parser=None) -> io.NodeOutput:
        frames = to_bchw(image)
        if frames.shape[0] != len(faces.image_sizes) or tuple(frames.shape[-2:]) != tuple(faces.image_sizes[0]):
            raise ValueError("image does not match the images the faces were detected in (size or batch differs)")
        restored = to_bchw(restored_crops)
        if restored.shape[0] != len(faces):
            raise ValueError(f"{len(faces)} faces but {restored.shape[0]} restored crops")
        if mask_type == "parsing":
            if face_parser is None:
                raise ValueError("mask_type 'parsing' needs a face parser (Load Face Parser)")
            load_on_device(face_parser)
        targets = None if target_image is None else to_bchw(target_image)

        def paste(crops):
            parse_masks = parse_face_masks(face_parser.info, crops) if mask_type == "parsing" else None
            return paste_faces(frames, faces, crops, mask=mask_type, parse_masks=parse_masks, feather=feather,
                               color_correction=color_correction, blend=blend, targets=targets)

        # on the compute device where the crops fit, else (or after running out of memory there) on the CPU
        pasted, masks = smaller_after_out_of_memory([
            lambda: paste(on_compute_device(restored)), lambda: paste(restored.cpu()),
        ])
        return io.NodeOutput(pasted.movedim(1, -1).contiguous(), masks)
