"""Our twins of facerestore_cf's, ReActor's and lucak5s/comfyui_gfpgan's nodes (nodes/peers.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from node_info import node_inputs, WIDGET_TYPES

# The peers' INPUT_TYPES as their source defines them (facerestore_cf __init__.py, ReActor nodes.py, lucak5s
# nodes.py): (id, type, default or None), in their order. Combo options are checked apart.
PEER_SCHEMAS = {
    "FaceRestoreModelLoader": [("model_name", "COMBO", None)],
    "FaceRestoreCFWithModel": [("facerestore_model", "FACERESTORE_MODEL", None), ("image", "IMAGE", None),
                               ("facedetection", "COMBO", None), ("codeformer_fidelity", "FLOAT", 0.5)],
    "CropFace": [("image", "IMAGE", None), ("facedetection", "COMBO", None)],
    "ReActorRestoreFace": [("image", "IMAGE", None), ("facedetection", "COMBO", None), ("model", "COMBO", None),
                           ("visibility", "FLOAT", 1.0), ("codeformer_weight", "FLOAT", 0.5)],
    "ReActorRestoreFaceAdvanced": [
        ("image", "IMAGE", None), ("facedetection", "COMBO", None), ("model", "COMBO", None),
        ("visibility", "FLOAT", 1.0), ("codeformer_weight", "FLOAT", 0.5), ("face_selection", "COMBO", "all"),
        ("sort_by", "COMBO", "area"), ("reverse_order", "BOOLEAN", False), ("take_start", "INT", 0),
        ("take_count", "INT", 1)],
    "GFPGANRestorer": [("image", "IMAGE", None), ("model_name", "COMBO", None)],
}
FLOAT_RANGES = {"codeformer_fidelity": (0.0, 1.0, 0.05), "codeformer_weight": (0.0, 1.0, 0.05),
                "visibility": (0.0, 1.0, 0.05)}
DETECTORS = ["retinaface_resnet50", "retinaface_mobile0.25", "YOLOv5l", "YOLOv5n"]
PEER_OUTPUTS = {"FaceRestoreModelLoader": ["FACERESTORE_MODEL"], "GFPGANRestorer": ["IMAGE", "MASK"]}
SMALL_MODEL = "gfpgan-64-seeded.safetensors"


@pytest.fixture(scope="module")
def peers(comfy_nodes, official_weight_files, retinaface_weights, small_model):
    """The twins, with the files the peers' users keep: detectors under their official names, a CodeFormer,
    lucak5s' GFPGANv1.4.pth, and a small GFP-GAN (64 px, for the many faces a seeded YOLO finds). Removed
    afterwards, so other modules' folder listings stay as they were."""
    from comfyui_gfpgan.codeformer_arch.testing import seeded_codeformer
    from comfyui_gfpgan.nodes import peers as module

    models = Path(os.environ["GFPGAN_TEST_MODELS_DIR"])
    made = [models / "facedetection" / "detection_mobilenet0.25_Final.safetensors",
            models / "facerestore_models" / "codeformer-seeded.pth",
            models / "facerestore_models" / "GFPGANv1.4.pth",
            models / "facerestore_models" / SMALL_MODEL]
    shutil.copy(retinaface_weights, made[0])
    codeformer = {k: v.contiguous() for k, v in seeded_codeformer(seed=3).state_dict().items()}
    torch.save({"params_ema": codeformer}, made[1])
    shutil.copy(official_weight_files["pth"], made[2])
    shutil.copy(small_model, made[3])
    yield module
    for path in made:
        path.unlink(missing_ok=True)
    module._cache.clear()


@pytest.fixture
def resnet50_named(peers):
    """The MobileNet weights saved as detection_Resnet50_Final (the file's keys, not its name, say the backbone)."""
    path = Path(os.environ["GFPGAN_TEST_MODELS_DIR"]) / "facedetection" / "detection_Resnet50_Final.safetensors"
    shutil.copy(Path(os.environ["GFPGAN_TEST_MODELS_DIR"]) / "facedetection" / "detection_mobilenet0.25_Final.safetensors", path)
    yield path
    path.unlink()


@pytest.fixture
def yolo_files(peers, yolov5n_face_file):
    """The seeded YOLOv5-face n under both of CodeFormer's names (the file's keys, not its name, say the size)."""
    folder = Path(os.environ["GFPGAN_TEST_MODELS_DIR"]) / "facedetection"
    made = [folder / "yolov5n-face.pth", folder / "yolov5l-face.pth"]
    for path in made:
        shutil.copy(yolov5n_face_file, path)
    yield made
    for path in made:
        path.unlink()


@pytest.fixture(scope="module")
def small_frame():
    """A 96x128 corner of the image the seeded YOLO is calibrated on: 7 faces above 0.7, 2 of them above 0.8."""
    from yolov5face_reference import signal_images

    return signal_images()[1:2, :, :96, :128].permute(0, 2, 3, 1).contiguous()


@pytest.fixture
def parser_file(peers):
    """Seeded ParseNet weights under facexlib's name, where the peers' users keep it."""
    from facexlib.parsing.parsenet import ParseNet

    torch.manual_seed(0)
    network = ParseNet(in_size=512, out_size=512, parsing_ch=19)
    path = Path(os.environ["GFPGAN_TEST_MODELS_DIR"]) / "facedetection" / "parsing_parsenet.safetensors"
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, path)
    yield path
    path.unlink()


@pytest.fixture(scope="module")
def image(astronaut_rgb):
    return torch.from_numpy(astronaut_rgb)[None].float() / 255


def twin(peers, peer_type):
    from comfyui_gfpgan.nodes.peer_workflows import BY_PEER_TYPE

    our_type = BY_PEER_TYPE[peer_type].our_type
    return next(node for node in peers.PEER_NODE_CLASSES if node.GET_NODE_INFO_V1()["name"] == our_type)


@pytest.mark.parametrize("peer_type", list(PEER_SCHEMAS))
def test_each_twin_has_its_peers_inputs_in_its_order(peers, peer_type):
    from comfyui_gfpgan.nodes.peer_workflows import BY_PEER_TYPE

    node = twin(peers, peer_type)
    rows = node_inputs(node)
    assert [(name, io_type) for name, io_type, _, _ in rows] == [(n, t) for n, t, _ in PEER_SCHEMAS[peer_type]]
    for (name, io_type, options, _), (_, _, default) in zip(rows, PEER_SCHEMAS[peer_type]):
        if default is not None:
            assert options["default"] == default, name
        if name in FLOAT_RANGES:
            assert (options["min"], options["max"], options["step"]) == FLOAT_RANGES[name], name
        if name == "facedetection":
            assert options["options"] == DETECTORS
    info = node.GET_NODE_INFO_V1()
    assert info["output"] == PEER_OUTPUTS.get(peer_type, ["IMAGE"]) and info["name"] != peer_type
    # the table every rewrite uses agrees with the node: its inputs, and its widgets in the saved order
    peer = BY_PEER_TYPE[peer_type]
    assert list(peer.inputs) == [name for name, *_ in rows]
    assert list(peer.widgets) == [name for name, io_type, *_ in rows if io_type in WIDGET_TYPES]
    assert peer.outputs == len(info["output"])


def test_model_lists_are_the_peers(peers):
    names = node_inputs(twin(peers, "ReActorRestoreFace"))[2][2]["options"]
    assert names[0] == "none" and names[1:] == sorted(names[1:], key=str.lower) and "codeformer-seeded.pth" in names
    assert node_inputs(twin(peers, "GFPGANRestorer"))[1][2]["options"] == ["GFPGANv1.4.pth", "GFPGANv1.3.pth",
                                                                          "RestoreFormer.pth"]


def restore_ours(comfy_nodes, image, model, detector, fidelity, threshold=0.8, blend=1.0, parser=None, **extra):
    return comfy_nodes.GFPGANFaceRestore.execute(
        image, model, detector, fidelity, blend, "feathered" if parser is None else "parsing", 1.0, False,
        threshold, "all", 1, 0, 0, 0, "fixed", 0, face_parser=parser, min_eye_distance=5.0, **extra).result


@pytest.fixture(scope="module")
def detector(comfy_nodes, peers):
    return comfy_nodes.LoadFaceDetector.execute("detection_mobilenet0.25_Final.safetensors").result[0]


@pytest.mark.slow
def test_facerestore_cf_workflow_gives_our_nodes_result_and_gfpgan_ignores_the_codeformer_weight(
        comfy_nodes, peers, image, detector):
    model = twin(peers, "FaceRestoreModelLoader").execute("GFPGANv1.4-seeded.safetensors").result[0]
    restore = twin(peers, "FaceRestoreCFWithModel")
    at_half = restore.execute(model, image, "retinaface_mobile0.25", 0.5).result[0]
    at_one = restore.execute(model, image, "retinaface_mobile0.25", 1.0).result[0]
    ours, _ = restore_ours(comfy_nodes, image, model, detector, fidelity=1.0)
    assert at_half.shape == image.shape and not torch.equal(at_half, image)  # the face was restored
    assert torch.equal(at_half, ours) and torch.equal(at_one, at_half)  # GFP-GAN: its official output, any w


@pytest.mark.slow
def test_codeformer_follows_the_codeformer_weight(comfy_nodes, peers, image, detector):
    model = twin(peers, "FaceRestoreModelLoader").execute("codeformer-seeded.pth").result[0]
    restore = twin(peers, "FaceRestoreCFWithModel")
    at_half = restore.execute(model, image, "retinaface_mobile0.25", 0.5).result[0]
    at_one = restore.execute(model, image, "retinaface_mobile0.25", 1.0).result[0]
    assert (at_half - at_one).abs().max() > 0.05  # different faces
    assert torch.equal(at_half, restore_ours(comfy_nodes, image, model, detector, fidelity=0.5)[0])


@pytest.mark.slow
def test_reactor_visibility_is_our_blend_and_its_parsing_mask_is_used_when_present(
        comfy_nodes, peers, image, detector, parser_file):
    parser = comfy_nodes.LoadFaceParser.execute(parser_file.name).result[0]
    out = twin(peers, "ReActorRestoreFace").execute(image, "retinaface_mobile0.25", "GFPGANv1.4-seeded.safetensors",
                                                    0.6, 0.5).result[0]
    model = comfy_nodes.LoadGFPGANModel.execute("GFPGANv1.4-seeded.safetensors", "auto").result[0]
    ours, mask = restore_ours(comfy_nodes, image, model, detector, fidelity=1.0, blend=0.6, parser=parser)
    feathered, _ = restore_ours(comfy_nodes, image, model, detector, fidelity=1.0, blend=0.6)
    assert torch.equal(out, ours) and not torch.equal(out, feathered)


def test_reactor_none_passes_the_image_through(peers, image):
    node = twin(peers, "ReActorRestoreFace")
    assert node.validate_inputs("YOLOv5l", "none") is True  # no detector needed to pass through
    assert torch.equal(node.execute(image, "retinaface_resnet50", "none", 1.0, 0.5).result[0], image)


def test_reactor_selection_maps_onto_our_face_order(peers):
    select = peers.reactor_selection
    assert select("all", "x_position", True, 3, 2) == {}
    assert select("largest", "area", False, 0, 1) == {"order": "score", "face_indices": "0-0"}
    assert select("filter", "x_position", False, 1, 2) == {"order": "left_to_right", "face_indices": "1-2"}
    assert select("filter", "y_position", True, 0, 3) == {"order": "bottom_to_top", "face_indices": "0-2"}
    with pytest.raises(ValueError, match="lowest confidence first"):
        select("filter", "detection_confidence", False, 0, 1)


@pytest.mark.slow
def test_reactor_advanced_takes_the_faces_it_names(comfy_nodes, peers, image):
    node = twin(peers, "ReActorRestoreFaceAdvanced")
    args = (image, "retinaface_mobile0.25", "GFPGANv1.4-seeded.safetensors", 1.0, 0.5)
    assert torch.equal(node.execute(*args, "largest", "area", False, 1, 1).result[0], image)  # one face: none at 1
    assert not torch.equal(node.execute(*args, "largest", "area", False, 0, 1).result[0], image)


@pytest.mark.slow
def test_lucak5s_restorer_runs_gfpganer_settings(comfy_nodes, peers, image, detector, resnet50_named):
    out, mask = twin(peers, "GFPGANRestorer").execute(image, "GFPGANv1.4.pth").result
    model = comfy_nodes.LoadGFPGANModel.execute("GFPGANv1.4.pth", "auto").result[0]
    ours, our_mask = restore_ours(comfy_nodes, image, model, detector, fidelity=1.0, threshold=0.97)
    assert torch.equal(out, ours) and torch.equal(mask, our_mask) and mask.max() > 0


def test_crop_face_gives_aligned_crops_and_a_black_one_without_a_face(comfy_nodes, peers, image):
    crops = twin(peers, "CropFace").execute(torch.cat([image, torch.zeros_like(image)]), "retinaface_mobile0.25").result[0]
    assert crops.shape == (2, 512, 512, 3) and crops[0].mean() > 0.1 and crops[1].abs().max() == 0


def test_a_missing_detector_names_the_file_the_folders_and_the_url(peers, image):
    message = peers.detector_message("retinaface_resnet50")
    assert "detection_Resnet50_Final.pth" in message and "facedetection" in message
    assert "https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth" in message
    assert twin(peers, "FaceRestoreCFWithModel").validate_inputs(facedetection="retinaface_resnet50") == message
    with pytest.raises(FileNotFoundError, match="detection_Resnet50_Final.pth not found"):
        peers.peer_detector("retinaface_resnet50")


def test_yolo_choices_load_codeformers_yolo_files(peers, yolo_files, caplog):
    with caplog.at_level(logging.WARNING):
        for choice, file_name in (("YOLOv5n", "yolov5n-face.pth"), ("YOLOv5l", "yolov5l-face.pth")):
            assert twin(peers, "CropFace").validate_inputs(facedetection=choice) is True
            detector = peers.peer_detector(choice).info
            assert (detector.family.name, detector.path.name) == ("YOLOv5-face", file_name)
    assert not caplog.records  # nothing to warn about: no stand-in detector


def test_a_missing_yolo_file_is_an_error_even_with_retinaface_there(peers):
    message = peers.detector_message("YOLOv5l")
    assert message.startswith("facedetection 'YOLOv5l': yolov5l-face.pth not found. Put it in one of: ")
    assert "https://github.com/sczhou/CodeFormer/releases/download/v0.1.0/yolov5l-face.pth" in message
    assert "RetinaFace" not in message and "\n" not in message
    assert twin(peers, "ReActorRestoreFace").validate_inputs(facedetection="YOLOv5l", model=SMALL_MODEL) == message
    with pytest.raises(FileNotFoundError, match="yolov5l-face.pth not found"):
        peers.peer_detector("YOLOv5l")


def test_crop_face_detects_with_yolo_at_facelibs_yolo_threshold(comfy_nodes, peers, yolo_files, small_frame):
    crops = twin(peers, "CropFace").execute(small_frame, "YOLOv5n").result[0]
    yolo = comfy_nodes.LoadFaceDetector.execute("yolov5n-face.pth").result[0]
    at_07, at_08 = (comfy_nodes.DetectFaces.execute(small_frame, yolo, threshold, "all", 1, 0, 0, 0, 0.0, 5.0).result[1]
                    for threshold in (0.7, 0.8))
    assert 0 < len(at_08) < len(at_07)  # the frame tells YOLO's 0.7 from RetinaFace's 0.8
    assert torch.equal(crops, at_07)


def test_restore_twins_detect_with_yolo_at_facelibs_yolo_threshold(comfy_nodes, peers, yolo_files, small_frame):
    model = twin(peers, "FaceRestoreModelLoader").execute(SMALL_MODEL).result[0]
    facerestore_cf = twin(peers, "FaceRestoreCFWithModel").execute(model, small_frame, "YOLOv5n", 0.5).result[0]
    reactor = twin(peers, "ReActorRestoreFace").execute(small_frame, "YOLOv5n", SMALL_MODEL, 1.0, 0.5).result[0]
    yolo = comfy_nodes.LoadFaceDetector.execute("yolov5n-face.pth").result[0]
    at_07, _ = restore_ours(comfy_nodes, small_frame, model, yolo, fidelity=1.0, threshold=0.7)
    at_08, _ = restore_ours(comfy_nodes, small_frame, model, yolo, fidelity=1.0, threshold=0.8)
    assert not torch.equal(at_07, at_08) and not torch.equal(at_07, small_frame)
    assert torch.equal(facerestore_cf, at_07) and torch.equal(reactor, at_07)


def test_extension_registers_a_node_replacement_per_peer_node(comfy_nodes, peers):
    from comfy_api.v0_0_2 import ComfyAPI, io

    from comfyui_gfpgan.nodes.peer_workflows import PEER_NODES

    if not hasattr(ComfyAPI, "registered"):  # the real ComfyUI's: its server holds what was registered
        pytest.skip("the real ComfyUI's node replacements are checked end to end (test_comfyui_e2e.py)")
    ComfyAPI.registered.clear()
    extension = asyncio.run(__import__("comfyui_gfpgan").comfy_entrypoint())
    asyncio.run(extension.on_load())
    registered = {r.old_node_id: r for r in ComfyAPI.registered}
    assert set(registered) == {p.peer_type for p in PEER_NODES}
    for peer in PEER_NODES:
        replace = registered[peer.peer_type]
        assert replace.new_node_id == peer.our_type and replace.old_widget_ids == list(peer.widgets)
        assert replace.input_mapping == [{"new_id": n, "old_id": n} for n in peer.inputs]
        assert replace.output_mapping == [{"old_idx": i, "new_idx": i} for i in range(peer.outputs)]


def test_without_node_replacement_nothing_is_registered(peers, monkeypatch):
    from comfyui_gfpgan.nodes import compat

    monkeypatch.delattr(compat.io, "NodeReplace", raising=False)
    assert asyncio.run(compat.register_node_replacements([object()])) is False
