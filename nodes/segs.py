"""FACES <-> SEGS, for Impact Pack users (detailers, SEGS filters and previews).

Impact Pack's SEGS is ``((height, width), [SEG, ...])`` for one frame; each SEG
is a named tuple ``(cropped_image, cropped_mask, confidence, crop_region, bbox,
label, control_net_wrapper)`` with integer ``[x1, y1, x2, y2]`` regions and a
float32 numpy mask the size of ``crop_region``. SEGS carry no landmarks, so
they cannot be aligned for GFPGAN: the way back keeps the detected faces that
lie inside the segments instead.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import replace

import numpy as np
import torch
from comfy_api.v0_0_2 import io

from ..face_pipeline.faces import FaceBatch
from .compat import schema_extras, segs_type
from .common import CATEGORY, to_bchw
from .faces import Faces

SEGS = segs_type()

# Same name, fields and default as Impact Pack's own SEG, so its nodes read ours by attribute.
SEG = namedtuple(
    "SEG", ["cropped_image", "cropped_mask", "confidence", "crop_region", "bbox", "label", "control_net_wrapper"],
    defaults=[None],
)


def _grown_box(box: tuple[float, float, float, float], factor: float, height: int, width: int) -> list[int]:
    """The box grown ``factor`` times about its centre, in whole pixels, clipped to the frame."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half_w, half_h = (box[2] - box[0]) * factor / 2, (box[3] - box[1]) * factor / 2
    x1, y1 = max(0, int(cx - half_w)), max(0, int(cy - half_h))
    x2, y2 = min(width, int(np.ceil(cx + half_w))), min(height, int(np.ceil(cy + half_h)))
    return [x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)]


def faces_to_segs(image: torch.Tensor, faces: FaceBatch, frame: int, crop_factor: float) -> tuple:
    """SEGS for the faces of one frame of a ComfyUI IMAGE ``[B,H,W,C]``; each mask covers the face box."""
    height, width = image.shape[1:3]
    segs = []
    for index in faces.faces_in_image(frame):
        face = faces.faces[index]
        box = _grown_box(face.box, 1.0, height, width)
        crop = _grown_box(face.box, crop_factor, height, width)
        mask = np.zeros((crop[3] - crop[1], crop[2] - crop[0]), dtype=np.float32)
        mask[box[1] - crop[1] : box[3] - crop[1], box[0] - crop[0] : box[2] - crop[0]] = 1.0
        cropped = image[frame : frame + 1, crop[1] : crop[3], crop[0] : crop[2], :3].clone()
        segs.append(SEG(cropped, mask, np.float32(face.score), crop, box, "face", None))
    return (height, width), segs


def faces_inside_segs(faces: FaceBatch, segs: tuple) -> list[int]:
    """Indices of the faces whose box centre lies inside some segment's bbox (in any frame)."""
    boxes = [tuple(float(v) for v in seg.bbox) for seg in segs[1]]
    keep = []
    for index, face in enumerate(faces.faces):
        cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
        if any(x1 <= cx <= x2 and y1 <= cy <= y2 for x1, y1, x2, y2 in boxes):
            keep.append(index)
    return keep


class FacesToSEGS(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="GFPGANFacesToSEGS",
            display_name="Faces to SEGS (GFPGAN)",
            category=CATEGORY,
            **schema_extras(search_aliases=["segs", "faces to segs", "impact pack", "face segs"]),
            description="Turns the faces of one frame into Impact Pack SEGS (label 'face', mask = face box), e.g. "
            "for a detailer that redraws the faces GFPGAN found.",
            inputs=[
                io.Image.Input("image", tooltip="The images the faces were detected in"),
                Faces.Input("faces", tooltip="From Detect Faces"),
                io.Float.Input("crop_factor", default=3.0, min=1.0, max=10.0, step=0.01,
                               tooltip="Each segment's crop region is the face box grown this many times"),
                io.Int.Input("frame", default=0, min=0, max=65535,
                             tooltip="Which image of the batch (SEGS describe one image)"),
            ],
            outputs=[SEGS.Output(display_name="segs", tooltip="Impact Pack SEGS, one per face of that image")],
        )

    @classmethod
    def execute(cls, image, faces, crop_factor, frame) -> io.NodeOutput:
        to_bchw(image)  # validates the layout
        if image.shape[0] != len(faces.image_sizes) or tuple(image.shape[1:3]) != tuple(faces.image_sizes[0]):
            raise ValueError("image does not match the images the faces were detected in (size or batch differs)")
        if frame >= image.shape[0]:
            raise ValueError(f"frame {frame} is outside the batch of {image.shape[0]} images")
        return io.NodeOutput(faces_to_segs(image, faces, frame, crop_factor))


class FilterFacesBySEGS(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="GFPGANFilterFacesBySEGS",
            display_name="Keep Faces inside SEGS (GFPGAN)",
            category=CATEGORY,
            **schema_extras(search_aliases=["segs", "filter faces", "impact pack", "select faces"]),
            description="Keeps the detected faces whose centre lies inside an Impact Pack segment (the same regions "
            "in every frame), with their crops, so Impact's detectors and SEGS filters choose which faces to "
            "restore. SEGS have no landmarks, so faces still come from Detect Faces.",
            inputs=[
                Faces.Input("faces", tooltip="From Detect Faces"),
                io.Image.Input("face_crops", tooltip="The face crops that belong to faces, same order"),
                SEGS.Input("segs", tooltip="Impact Pack SEGS of an image the size of the detected frames"),
            ],
            outputs=[
                Faces.Output(display_name="faces", tooltip="The faces inside a segment"),
                io.Image.Output(display_name="face_crops", tooltip="Their crops, same order"),
            ],
        )

    @classmethod
    def execute(cls, faces, face_crops, segs) -> io.NodeOutput:
        if face_crops.shape[0] != len(faces):
            raise ValueError(f"{len(faces)} faces but {face_crops.shape[0]} face crops")
        size = tuple(int(v) for v in segs[0][:2])
        if faces.image_sizes and size != tuple(faces.image_sizes[0]):
            raise ValueError(f"SEGS are for a {size[1]}x{size[0]} image, faces for {faces.image_sizes[0][1]}x"
                             f"{faces.image_sizes[0][0]}")
        keep = faces_inside_segs(faces, segs)
        kept = replace(faces, faces=[faces.faces[i] for i in keep])
        return io.NodeOutput(kept, face_crops[keep].clone())
