"""Twins of other packs' face-restore nodes, under our own ids, so their shared workflows and API prompts run here.

Each twin has its peer's inputs, names, types, widget order and defaults (``peer_workflows.PEER_NODES``), and
runs our pipeline with the settings that reproduce what the peer does:

- detection as the peers' facelib / facexlib helpers: the confidence facelib's ``detect_faces`` defaults to for
  the detector's family (facerestore_cf, ReActor: RetinaFace 0.8, YOLOv5-face 0.7; 0.97 for lucak5s'
  GFPGANer), eyes at least 5 px apart, all faces;
- ``facedetection`` names the detector file in our detection folders: RetinaFace's for the retinaface choices,
  CodeFormer's yolov5l-face.pth / yolov5n-face.pth for YOLOv5l / YOLOv5n;
- ``codeformer_fidelity`` / ``codeformer_weight`` drive CodeFormer's w only (as ReActor does); every other
  family gives its official output (GFP-GAN at weight 1), where facerestore_cf passed ``w`` to any model;
- paste-back with the face-parsing mask, as the peers do (``use_parse=True``), when ``parsing_parsenet.pth`` is
  in the detection folders, else our feathered mask; ``visibility`` is our ``blend``; output size = input size.
"""

from __future__ import annotations

import logging
import os
from functools import partial
from typing import Callable

import torch
from comfy_api.v0_0_2 import io


from ..face_pipeline.parse import load_parser
from ..face_pipeline.pipeline import DetectSettings, find_faces_in_frames
from ..face_pipeline.detect import load_detector
from ..face_restorers.families import CODEFORMER
from ..face_restorers.onnx_restorer import ONNX_WEIGHTED_GRAPH
from ..model_files.releases import FACE_DETECTION, FACE_RESTORATION, find_release
from .common import (
    CATEGORY,
    DETECTION_FOLDER,
    GFPGAN_FOLDER,
    RESTORER_SUFFIXES,
    PatchedModel,
    file_fingerprint,
    load_on_device,
    missing_model_message,
    to_bchw,
    to_bhwc,
    weight_files,
)
from .loaders import _load_from_folder, _load_restorer
from .compat import schema_extras
from .peer_workflows import FACE_DETECTION_CHOICES, PEER_NODES
from .restore import GFPGANFaceRestore

log = logging.getLogger(__name__)

FaceRestoreModel = io.Custom("FACERESTORE_MODEL")  # facerestore_cf's type name, so its saved links keep their type
PEER_CATEGORY = f"{CATEGORY}/other packs' nodes"

# facedetection choice -> the detector file the peers load for it (found here by name, with any weight suffix)
CHOICE_FILES = {
    "retinaface_resnet50": "detection_Resnet50_Final.pth",
    "retinaface_mobile0.25": "detection_mobilenet0.25_Final.pth",
    "YOLOv5l": "yolov5l-face.pth",
    "YOLOv5n": "yolov5n-face.pth",
}
PARSER_FILE = "parsing_parsenet.pth"
GFPGANER_THRESHOLD = 0.97  # facexlib's FaceRestoreHelper, as lucak5s' GFPGANer runs it
PEER_MIN_EYE_DISTANCE = 5.0  # every peer: get_face_landmarks_5(eye_dist_threshold=5)
LUCAK5S_MODELS = ("GFPGANv1.4.pth", "GFPGANv1.3.pth", "RestoreFormer.pth")  # its fixed list
_cache: dict[str, tuple[tuple, PatchedModel]] = {}
_said: set[str] = set()


def _say_once(message: str) -> None:
    if message not in _said:
        _said.add(message)
        log.warning("[GFPGAN] %s", message)


def _find_by_stem(file_name: str) -> str | None:
    """The listed detection-folder file with this name, or the same stem under another weight suffix."""
    stem = os.path.splitext(file_name)[0].lower()
    for name in weight_files(DETECTION_FOLDER):
        if os.path.splitext(os.path.basename(name))[0].lower() == stem:
            return name
    return None


def _cached(kind: str, folder: str, name: str, load: Callable[[str], io.NodeOutput]) -> PatchedModel:
    """A model file loaded by its loader node's ``load`` once, and again when the file on disk changes (the
    twins take file names where our nodes take a loader's output, and run once per new image)."""
    fingerprint = file_fingerprint(folder, name)
    held = _cache.get(kind)
    if held is None or held[0] != fingerprint:
        held = (fingerprint, load(name).result[0])
        _cache[kind] = held
    return held[1]


def detector_message(choice: str) -> str | None:
    """None if ``facedetection`` resolves to a detector file here, else the one-line error (file, folders, URL)."""
    if choice not in CHOICE_FILES:
        return f"unknown facedetection {choice!r}; use one of {', '.join(FACE_DETECTION_CHOICES)}"
    wanted = CHOICE_FILES[choice]
    if _find_by_stem(wanted):
        return None
    folders = ", ".join(_folders(DETECTION_FOLDER))
    return (f"facedetection {choice!r}: {wanted} not found. Put it in one of: {folders}. "
            f"Official file: {wanted} from {find_release(file_name=wanted).url}. Nothing is downloaded automatically.")


def _folders(key: str) -> list[str]:
    import folder_paths

    return folder_paths.get_folder_paths(key)


def peer_detector(choice: str) -> PatchedModel:
    """The detector a ``facedetection`` choice names, loaded from our detection folders."""
    message = detector_message(choice)
    if message:
        raise FileNotFoundError(message)
    return _cached("detector", DETECTION_FOLDER, _find_by_stem(CHOICE_FILES[choice]),
                   partial(_load_from_folder, DETECTION_FOLDER, arch=FACE_DETECTION, load=load_detector))


def peer_threshold(detector: PatchedModel) -> float:
    """The confidence facerestore_cf's and ReActor's facelib detect at: ``detect_faces``' default for the
    detector's family (RetinaFace 0.8, YOLOv5-face 0.7)."""
    return detector.info.family.facelib_threshold


def peer_parser() -> PatchedModel | None:
    """facexlib's ParseNet when its file is in the detection folders (the peers paste with it), else None."""
    found = _find_by_stem(PARSER_FILE)
    if found is None:
        _say_once(f"{PARSER_FILE} is not in {', '.join(_folders(DETECTION_FOLDER))}: faces from other packs' nodes "
                  "are pasted with the feathered mask instead of the peers' face-parsing mask")
        return None
    return _cached("parser", DETECTION_FOLDER, found,
                   partial(_load_from_folder, DETECTION_FOLDER, arch="ParseNet", load=load_parser))


def codeformer_only(model: PatchedModel, codeformer_weight: float) -> float:
    """The fidelity a peer node's CodeFormer weight means for this model: w for CodeFormer (and a CodeFormer ONNX
    export's weight input), else 1: every other family's official output."""
    return codeformer_weight if model.info.family in (CODEFORMER, ONNX_WEIGHTED_GRAPH) else 1.0


def restore_as_peer(image, model: PatchedModel, facedetection: str, codeformer_weight: float, *,
                    threshold: float | None = None, visibility: float = 1.0, order: str = "score",
                    face_indices: str = "") -> io.NodeOutput:
    """Our all-in-one node with the settings that reproduce a peer's restore node (see the module docstring);
    ``threshold`` None: ``peer_threshold``."""
    detector = peer_detector(facedetection)
    parser = peer_parser()
    return GFPGANFaceRestore.execute(
        image, model, detector, fidelity=codeformer_only(model, codeformer_weight), blend=visibility,
        mask_type="feathered" if parser is None else "parsing", feather=1.0, color_correction=False,
        threshold=peer_threshold(detector) if threshold is None else threshold, selection="all", top_k=1,
        min_face_size=0, max_face_size=0, working_size=0, noise="fixed", seed=0, face_parser=parser,
        min_eye_distance=PEER_MIN_EYE_DISTANCE, order=order, face_indices=face_indices)


def _facedetection_input():
    return io.Combo.Input("facedetection", options=list(FACE_DETECTION_CHOICES),
                          tooltip="The detector file in models/facedetection: detection_Resnet50_Final.pth, "
                          "detection_mobilenet0.25_Final.pth, yolov5l-face.pth or yolov5n-face.pth (or a "
                          ".safetensors of the same name)")


def _weight_input(name: str):
    return io.Float.Input(name, default=0.5, min=0.0, max=1.0, step=0.05,
                          tooltip="CodeFormer's w (0 = strongest restoration, 1 = closest to the input); other "
                          "families ignore it and give their official output")


def _restorer_names() -> list[str]:
    return weight_files(GFPGAN_FOLDER, RESTORER_SUFFIXES)


def _check_restorer(name: str) -> bool | str:
    return missing_model_message(GFPGAN_FOLDER, name, FACE_RESTORATION) or True


def _peer_schema(node_id: str, display_name: str, description: str, inputs: list, outputs: list) -> io.Schema:
    peer = next(p for p in PEER_NODES if p.our_type == node_id)
    aliases = [peer.peer_type.lower(), peer.pack.split(" ")[0].lower(), "face restore"]
    return io.Schema(node_id=node_id, display_name=display_name, category=PEER_CATEGORY, inputs=inputs,
                     outputs=outputs, description=description + " Runs this pack's pipeline.",
                     **schema_extras(search_aliases=aliases))


def _image_output():
    return io.Image.Output(display_name="IMAGE", tooltip="The images with the restored faces, same size")


class PeerFaceRestoreModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _peer_schema(
            "GFPGANPeerFaceRestoreModelLoader", "FaceRestoreModelLoader (facerestore_cf workflows)",
            "facerestore_cf's model loader, for its workflows: any face restore model this pack reads, from "
            "models/facerestore_models.",
            [io.Combo.Input("model_name", options=_restorer_names(),
                            tooltip="A face restoration file in models/facerestore_models")],
            [FaceRestoreModel.Output(display_name="FACERESTORE_MODEL", tooltip="The loaded face restore model")],
        )

    @classmethod
    def validate_inputs(cls, model_name: str) -> bool | str:
        return _check_restorer(model_name)

    @classmethod
    def fingerprint_inputs(cls, model_name: str, **_) -> tuple | None:
        return file_fingerprint(GFPGAN_FOLDER, model_name)

    @classmethod
    def execute(cls, model_name: str) -> io.NodeOutput:
        return _load_restorer(model_name, "auto")


class PeerFaceRestoreCFWithModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _peer_schema(
            "GFPGANPeerFaceRestoreCFWithModel", "FaceRestoreCFWithModel (facerestore_cf workflows)",
            "facerestore_cf's face restore node, for its workflows: finds every face, restores it and pastes it back.",
            [FaceRestoreModel.Input("facerestore_model", tooltip="From FaceRestoreModelLoader"),
             io.Image.Input("image", tooltip="Images to restore faces in"),
             _facedetection_input(), _weight_input("codeformer_fidelity")],
            [_image_output()],
        )

    @classmethod
    def validate_inputs(cls, facedetection: str, **_) -> bool | str:
        return detector_message(facedetection) or True

    @classmethod
    def execute(cls, facerestore_model, image, facedetection, codeformer_fidelity) -> io.NodeOutput:
        return io.NodeOutput(restore_as_peer(image, facerestore_model, facedetection, codeformer_fidelity).result[0])


class PeerCropFace(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _peer_schema(
            "GFPGANPeerCropFace", "CropFace (facerestore_cf workflows)",
            "facerestore_cf's CropFace, for its workflows: every face as an aligned 512 px crop; an image without "
            "a face gives one black crop, as facerestore_cf does.",
            [io.Image.Input("image", tooltip="Images to crop faces from"), _facedetection_input()],
            [io.Image.Output(display_name="IMAGE", tooltip="512x512 aligned face crops")],
        )

    @classmethod
    def validate_inputs(cls, facedetection: str, **_) -> bool | str:
        return detector_message(facedetection) or True

    @classmethod
    def execute(cls, image, facedetection) -> io.NodeOutput:
        detector = peer_detector(facedetection)
        load_on_device(detector)
        settings = DetectSettings(threshold=peer_threshold(detector), min_eye_distance=PEER_MIN_EYE_DISTANCE)
        frames = to_bchw(image)
        faces, crops = find_faces_in_frames(frames, detector.info, settings, 512)
        per_frame = [crops[[i for i, face in enumerate(faces.faces) if face.image_index == frame]]
                     for frame in range(frames.shape[0])]
        black = crops.new_zeros(1, 3, 512, 512)
        return io.NodeOutput(to_bhwc(torch.cat([c if len(c) else black for c in per_frame])))


def _restorer(name: str) -> PatchedModel:
    """A face restore model named by a widget (ReActor's and lucak5s' nodes have no loader node)."""
    return _cached("restorer", GFPGAN_FOLDER, name, partial(_load_restorer, dtype="auto"))


def _reactor_model_names() -> list[str]:
    return ["none", *sorted(_restorer_names(), key=str.lower)]


def _reactor_inputs() -> list:
    return [io.Image.Input("image", tooltip="Images to restore faces in"),
            _facedetection_input(),
            io.Combo.Input("model", options=_reactor_model_names(),
                           tooltip="A face restoration file in models/facerestore_models; none = pass through"),
            io.Float.Input("visibility", default=1.0, min=0.0, max=1.0, step=0.05,
                           tooltip="How much of the restored face shows (our blend)"),
            _weight_input("codeformer_weight")]


def _reactor_restore(image, facedetection, model, visibility, codeformer_weight, **selection) -> io.NodeOutput:
    if model == "none":
        return io.NodeOutput(image)
    loaded = _restorer(model)
    return io.NodeOutput(restore_as_peer(image, loaded, facedetection, codeformer_weight, visibility=visibility,
                                         **selection).result[0])


def _check_reactor(facedetection: str, model: str) -> bool | str:
    if model == "none":
        return True  # passes the image through: no detector is needed either
    return detector_message(facedetection) or _check_restorer(model)


class PeerReActorRestoreFace(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _peer_schema(
            "GFPGANPeerReActorRestoreFace", "Restore Face (ReActor workflows)",
            "ReActor's Restore Face, for its workflows: finds every face, restores it and pastes it back.",
            _reactor_inputs(), [_image_output()],
        )

    @classmethod
    def validate_inputs(cls, facedetection: str, model: str, **_) -> bool | str:
        return _check_reactor(facedetection, model)

    @classmethod
    def execute(cls, image, facedetection, model, visibility, codeformer_weight) -> io.NodeOutput:
        return _reactor_restore(image, facedetection, model, visibility, codeformer_weight)


# ReActor sorts ascending unless reverse_order; its "area" is the aligned crop's, the same for every face, so
# that sort keeps the detector's order (by confidence). Each (sort_by, reverse_order) as our face order:
REACTOR_ORDERS = {
    ("area", False): "score", ("area", True): "score",
    ("x_position", False): "left_to_right", ("x_position", True): "right_to_left",
    ("y_position", False): "top_to_bottom", ("y_position", True): "bottom_to_top",
    ("detection_confidence", True): "score",
}


def reactor_selection(face_selection: str, sort_by: str, reverse_order: bool, take_start: int,
                      take_count: int) -> dict:
    """ReActor's face selection as our face order and positions: ``filter`` and ``largest`` take ``take_count``
    faces from ``take_start`` in that order (ReActor's position filter spans the whole image)."""
    if face_selection == "all":
        return {}
    order = REACTOR_ORDERS.get((sort_by, bool(reverse_order)))
    if order is None:
        raise ValueError(f"sort_by {sort_by!r} with reverse_order {reverse_order} (lowest confidence first) has no "
                         "counterpart here; set reverse_order to true (highest first) or sort by position")
    return {"order": order, "face_indices": f"{take_start}-{take_start + take_count - 1}"}


class PeerReActorRestoreFaceAdvanced(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _peer_schema(
            "GFPGANPeerReActorRestoreFaceAdvanced", "Restore Face Advanced (ReActor workflows)",
            "ReActor's Restore Face Advanced, for its workflows: like Restore Face, restoring all faces or "
            "take_count of them from take_start in the chosen order.",
            [*_reactor_inputs(),
             io.Combo.Input("face_selection", options=["all", "filter", "largest"], default="all",
                            tooltip="all faces, or take_count faces from take_start in the sort_by order"),
             io.Combo.Input("sort_by", options=["area", "x_position", "y_position", "detection_confidence"],
                            default="area", optional=True,
                            tooltip="Order for filter / largest (area keeps the detector's order, as in ReActor)"),
             io.Boolean.Input("reverse_order", default=False, optional=True, tooltip="Reverse the order"),
             io.Int.Input("take_start", default=0, min=0, max=100, step=1, optional=True,
                          tooltip="First position taken"),
             io.Int.Input("take_count", default=1, min=1, max=100, step=1, optional=True,
                          tooltip="How many faces are taken")],
            [_image_output()],
        )

    @classmethod
    def validate_inputs(cls, facedetection: str, model: str, **_) -> bool | str:
        return _check_reactor(facedetection, model)

    @classmethod
    def execute(cls, image, facedetection, model, visibility, codeformer_weight, face_selection, sort_by="area",
                reverse_order=False, take_start=0, take_count=1) -> io.NodeOutput:
        selection = reactor_selection(face_selection, sort_by, reverse_order, take_start, take_count)
        return _reactor_restore(image, facedetection, model, visibility, codeformer_weight, **selection)


class PeerGFPGANRestorer(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _peer_schema(
            "GFPGANPeerGFPGANRestorer", "GFPGANRestorer (lucak5s comfyui_gfpgan workflows)",
            "lucak5s/comfyui_gfpgan's GFPGANRestorer, for its workflows: GFPGANer's restoration with "
            "retinaface_resnet50, the file from models/facerestore_models (or its models/face_restoration).",
            [io.Image.Input("image", tooltip="Images to restore faces in"),
             io.Combo.Input("model_name", options=list(LUCAK5S_MODELS), tooltip="The face restoration file")],
            [_image_output(), io.Mask.Output(display_name="MASK", tooltip="Where faces were blended in (0..1)")],
        )

    @classmethod
    def validate_inputs(cls, model_name: str) -> bool | str:
        return _check_restorer(model_name)

    @classmethod
    def execute(cls, image, model_name) -> io.NodeOutput:
        loaded = _restorer(model_name)
        return restore_as_peer(image, loaded, "retinaface_resnet50", 1.0, threshold=GFPGANER_THRESHOLD)


PEER_NODE_CLASSES: list[type[io.ComfyNode]] = [
    PeerFaceRestoreModelLoader,
    PeerFaceRestoreCFWithModel,
    PeerCropFace,
    PeerReActorRestoreFace,
    PeerReActorRestoreFaceAdvanced,
    PeerGFPGANRestorer,
]
