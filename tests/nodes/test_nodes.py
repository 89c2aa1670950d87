"""The ComfyUI nodes, run without ComfyUI through tests/comfy_stub (or the real modules if importable)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
import torch

from node_info import node_inputs, progress_recorder


@pytest.fixture(scope="module")
def nodes(comfy_nodes):
    return comfy_nodes


def test_every_schema_is_complete_and_sane(nodes):
    ids = set()
    for node in nodes.NODES:
        info = node.GET_NODE_INFO_V1()  # what /object_info sends the frontend; builds and validates the schema
        assert info["name"].startswith("GFPGAN") and info["name"] not in ids
        ids.add(info["name"])
        assert info["display_name"] and info["description"] and all(info["output_tooltips"])
        for name, io_type, options, _ in node_inputs(node):
            where = f"{info['name']}.{name}"
            assert options.get("tooltip"), f"{where} has no tooltip"
            if io_type == "FLOAT" and not info["name"].startswith("GFPGANPeer"):  # twins keep their peer's steps
                assert options["step"] <= 0.01, f"{where}: floats need step 0.01"
            if io_type in ("FLOAT", "INT"):
                assert options["min"] <= options["default"] <= options["max"], where
            if io_type == "COMBO" and "default" in options:
                assert options["default"] in options["options"], where
    assert len(ids) == 16  # ten of ours, six twins of other packs' nodes (test_peers.py)


def test_dtype_choice_uses_comfyui_bf16_answer_and_the_shared_chooser(nodes, monkeypatch):
    import comfy.model_management as model_management

    from comfyui_gfpgan.jobs.folder_job import job_dtype as cli_dtype
    from comfyui_gfpgan.gfpgan_arch import ModelLoadError
    from comfyui_gfpgan.nodes.loaders import _dtype

    asked = []
    monkeypatch.setattr(model_management, "should_use_bf16", lambda device=None, **_: asked.append(device) or True)
    assert _dtype("auto") == torch.bfloat16 and asked == [model_management.get_torch_device()]
    monkeypatch.setattr(model_management, "should_use_bf16", lambda device=None, **_: False)
    assert _dtype("auto") == torch.float32 and _dtype("bf16") == torch.bfloat16
    for choose in (_dtype, lambda choice: cli_dtype(choice, "cpu")):  # one chooser: the same refusal in both
        with pytest.raises(ModelLoadError, match="overflow half precision"):
            choose("fp16")


def test_extension_registers_folders_and_lists_nodes(nodes):
    import folder_paths

    extension = asyncio.run(__import__("comfyui_gfpgan").comfy_entrypoint())
    assert asyncio.run(extension.get_node_list()) == nodes.NODES
    assert any(p.endswith("facerestore_models") for p in folder_paths.get_folder_paths("facerestore_models"))
    assert any(p.endswith("facexlib") for p in folder_paths.get_folder_paths("facedetection"))
    _, _, options, _ = node_inputs(nodes.LoadGFPGANModel)[0]
    assert options["options"] == ["GFPGANv1.4-seeded.safetensors"]


@pytest.fixture(scope="module")
def loaded(nodes):
    model = nodes.LoadGFPGANModel.execute("GFPGANv1.4-seeded.safetensors", "auto").result[0]
    detector = nodes.LoadFaceDetector.execute("retinaface_mobilenet0.25.safetensors").result[0]
    return model, detector


def comfy_image(rgb) -> torch.Tensor:
    return torch.from_numpy(rgb)[None].float() / 255


def test_missing_model_names_folder_and_url(nodes):
    with pytest.raises(FileNotFoundError) as error:
        nodes.LoadGFPGANModel.execute("GFPGANv1.4.pth", "auto")
    message = str(error.value)
    assert "facerestore_models" in message and "https://github.com/TencentARC/GFPGAN/releases" in message
    # the loader reads every family: the hint names the recommended file of each (one for all ONNX files), no more
    for file_name, url in (("codeformer-v0.1.0.pth", "https://github.com/sczhou/CodeFormer/releases/download/v0.1.0/"),
                           ("RestoreFormer.pth", "/GFPGAN/releases/download/v1.3.4/"),
                           ("RestoreFormer++.ckpt", "/RestoreFormerPlusPlus/releases/download/v1.0.0/"),
                           ("GPEN-BFR-512.pth", "/robin/models/"), ("gfpgan_1.4.onnx", "/facefusion-assets/")):
        assert f"{file_name} from https://" in message and url in message, file_name
    assert "/codeformer.pth (CodeFormer, non-commercial)" in message and message.count("https://") == 6
    # ComfyUI calls validate_inputs when the prompt is queued, before any node runs
    assert nodes.LoadGFPGANModel.validate_inputs("GFPGANv1.4.pth") == message
    assert nodes.LoadGFPGANModel.validate_inputs("GFPGANv1.4-seeded.safetensors") is True
    assert nodes.LoadFaceDetector.validate_inputs("retinaface_mobilenet0.25.safetensors") is True
    assert "parsing_parsenet.pth from https://" in nodes.LoadFaceParser.validate_inputs("")


def test_a_missing_detector_names_every_file_of_both_families(nodes):
    from comfyui_gfpgan.model_files.releases import find_release

    message = nodes.LoadFaceDetector.validate_inputs("detection_Resnet50_Final.pth")
    assert message.startswith("model file 'detection_Resnet50_Final.pth' not found. Put it in one of: ")
    assert "facedetection" in message and "\n" not in message
    for file_name, family in (("detection_Resnet50_Final.pth", "RetinaFace"),
                              ("detection_mobilenet0.25_Final.pth", "RetinaFace"),
                              ("yolov5l-face.pth", "YOLOv5-face, non-commercial"),
                              ("yolov5n-face.pth", "YOLOv5-face, non-commercial")):
        assert f"{file_name} from {find_release(file_name=file_name).url} ({family})" in message, file_name
    assert message.count("https://") == 4
    with pytest.raises(FileNotFoundError) as error:
        nodes.LoadFaceDetector.execute("yolov5l-face.pth")
    assert "yolov5l-face.pth from https://github.com/sczhou/CodeFormer/releases/download/v0.1.0/" in str(error.value)


@pytest.fixture
def yolo_in_folder(nodes, yolov5n_face_file):
    """The seeded YOLOv5-face n in the detection folder under CodeFormer's name; removed afterwards."""
    path = Path(os.environ["GFPGAN_TEST_MODELS_DIR"]) / "facedetection" / "yolov5n-face.pth"
    shutil.copy(yolov5n_face_file, path)
    yield path
    path.unlink()


def test_detector_loader_lists_and_loads_either_family(nodes, yolo_in_folder):
    from yolov5face_reference import signal_images

    info = nodes.LoadFaceDetector.GET_NODE_INFO_V1()
    assert info["name"] == "GFPGANFaceDetectorLoader"  # the id saved workflows use
    assert info["display_name"] == "Load Face Detector (RetinaFace / YOLOv5-face)"
    assert "yolov5n-face.pth" in info["description"] and "detection_Resnet50_Final.pth" in info["description"]
    aliases = info.get("search_aliases")  # None where ComfyUI takes none (0.3.64, 0.8.0)
    assert aliases is None or {"retinaface", "yolo", "yolov5"} <= set(aliases)
    listed = node_inputs(nodes.LoadFaceDetector)[0][2]["options"]
    assert {"retinaface_mobilenet0.25.safetensors", "yolov5n-face.pth"} <= set(listed)
    assert nodes.LoadFaceDetector.validate_inputs("yolov5n-face.pth") is True
    yolo = nodes.LoadFaceDetector.execute("yolov5n-face.pth").result[0]
    retinaface = nodes.LoadFaceDetector.execute("retinaface_mobilenet0.25.safetensors").result[0]
    assert (yolo.info.family.name, yolo.info.variant, yolo.info.path) == ("YOLOv5-face", "n", yolo_in_folder)
    assert (retinaface.info.family.name, retinaface.info.variant) == ("RetinaFace", "mobilenet0.25")
    frame = signal_images()[:1].permute(0, 2, 3, 1).contiguous()  # what the seeded YOLO is calibrated on
    faces, crops, _ = nodes.DetectFaces.execute(frame, yolo, 0.9, "all", 1, 0, 0, 0).result
    assert len(faces.faces) == crops.shape[0] > 0 and crops.shape[1:] == (512, 512, 3)
    # threshold 0, the widget's default: the detector's own (YOLOv5-face 0.7, not RetinaFace's 0.97)
    boxes = {t: [f.box for f in nodes.DetectFaces.execute(frame, yolo, t, "all", 1, 0, 0, 0).result[0].faces]
             for t in (0.0, 0.7, 0.97)}
    assert boxes[0.0] == boxes[0.7] and len(boxes[0.7]) > len(boxes[0.97])
    assert "parsing_parsenet.pth from https://" in nodes.LoadFaceParser.validate_inputs("")


@pytest.mark.slow
def test_modular_chain_equals_all_in_one(nodes, loaded, astronaut_rgb):
    import comfy.utils

    model, detector = loaded
    image = comfy_image(astronaut_rgb)
    before = image.clone()
    faces, crops, preview = nodes.DetectFaces.execute(image, detector, 0.97, "all", 1, 0, 0, 640).result
    assert len(faces) == 1 and crops.shape == (1, 512, 512, 3) and preview.shape == image.shape
    assert not torch.equal(preview, image)  # boxes were drawn
    updates = progress_recorder()
    restored = nodes.RestoreFaces.execute(model, crops, 1.0, "fixed", 0).result[0]
    comfy.utils.set_progress_bar_global_hook(None)
    assert restored.shape == crops.shape and updates[-1] == (1, 1)
    pasted, mask = nodes.PasteFaces.execute(image, faces, restored, 1.0, "feathered", 1.0, False).result
    assert pasted.shape == image.shape and mask.shape == (1, 512, 512) and mask.max() > 0.99
    one_step, one_mask = nodes.GFPGANFaceRestore.execute(
        image, model, detector, 1.0, 1.0, "feathered", 1.0, False, 0.97, "all", 1, 0, 0, 640, "fixed", 0
    ).result
    assert torch.equal(image, before), "a node modified its input in place"
    assert torch.allclose(one_step, pasted, atol=2e-3) and torch.allclose(one_mask, mask, atol=1e-4)


def test_all_in_one_passes_faceless_frames_through(nodes, loaded):
    model, detector = loaded
    blank = torch.rand(1, 64, 80, 4)
    out, mask = nodes.GFPGANFaceRestore.execute(
        blank, model, detector, 1.0, 1.0, "feathered", 1.0, False, 0.97, "all", 1, 0, 0, 640, "fixed", 0
    ).result
    assert torch.equal(out, blank) and mask.shape == (1, 64, 80) and mask.max() == 0


def test_all_in_one_hands_back_the_pipelines_frames_without_copying_them(nodes, loaded, monkeypatch):
    """A long video batch is held once: the node's IMAGE is the pipeline's output buffer itself."""
    from comfyui_gfpgan.nodes import restore as restore_node

    model, detector = loaded
    results = []
    pipeline = restore_node.restore_faces_in_images
    monkeypatch.setattr(restore_node, "restore_faces_in_images",
                        lambda *a, **k: results.append(pipeline(*a, **k)) or results[-1])
    frames = torch.rand(3, 64, 80, 3)
    out, _ = nodes.GFPGANFaceRestore.execute(
        frames, model, detector, 1.0, 1.0, "feathered", 1.0, False, 0.97, "all", 1, 0, 0, 640, "fixed", 0
    ).result
    assert torch.equal(out, frames) and out.is_contiguous()
    assert out.data_ptr() == results[0].images.data_ptr()


@pytest.mark.slow
def test_all_in_one_restores_the_face_of_an_rgba_image_and_keeps_its_alpha(nodes, loaded, astronaut_rgb):
    model, detector = loaded
    rgb = comfy_image(astronaut_rgb)
    alpha = torch.rand(1, 512, 512, 1, generator=torch.Generator().manual_seed(0))
    out, mask = nodes.GFPGANFaceRestore.execute(
        torch.cat([rgb, alpha], dim=-1), model, detector, 1.0, 1.0, "feathered", 1.0, False, 0.97, "all", 1, 0, 0,
        640, "fixed", 0,
    ).result
    assert out.shape == (1, 512, 512, 4) and torch.equal(out[..., 3:], alpha)  # alpha kept exactly
    face, outside = mask[0] > 0.5, mask[0] == 0
    assert face.float().mean() > 0.02
    assert (out[0, ..., :3][face] - rgb[0][face]).abs().mean() > 0.02  # the face was restored
    assert torch.equal(out[0, ..., :3][outside], rgb[0][outside])


def test_paste_rejects_mismatched_inputs(nodes, loaded, astronaut_rgb):
    _, detector = loaded
    image = comfy_image(astronaut_rgb)
    faces, crops, _ = nodes.DetectFaces.execute(image, detector, 0.97, "all", 1, 0, 0, 640).result
    with pytest.raises(ValueError, match="does not match"):
        nodes.PasteFaces.execute(image[:, :256], faces, crops, 1.0, "feathered", 1.0, False)
    with pytest.raises(ValueError, match="face parser"):
        nodes.PasteFaces.execute(image, faces, crops, 1.0, "parsing", 1.0, False)


def test_cancel_stops_the_run(nodes, loaded, astronaut_rgb):
    import comfy.model_management

    _, detector = loaded
    comfy.model_management.interrupt_current_processing(True)  # what Cancel does
    with pytest.raises(comfy.model_management.InterruptProcessingException):
        nodes.DetectFaces.execute(comfy_image(astronaut_rgb), detector, 0.97, "all", 1, 0, 0, 640)


def test_gfpgan_from_core_upscale_model_loader(nodes, official_weight_files, astronaut_rgb):
    from spandrel import ModelLoader

    descriptor = ModelLoader().load_from_file(str(official_weight_files["pth"]))  # what core Load Upscale Model returns
    model = nodes.GFPGANFromUpscaleModel.execute(descriptor, "fp32").result[0]
    assert model.info.arch == "GFPGANv1Clean" and model.info.config["out_size"] == 512
    crops = torch.rand(1, 512, 512, 3, generator=torch.Generator().manual_seed(0))
    ours = nodes.RestoreFaces.execute(model, crops, 1.0, "fixed", 0).result[0]
    with torch.inference_mode():
        theirs = descriptor.model(crops.movedim(-1, 1).contiguous() * 2 - 1, return_rgb=False, randomize_noise=False)[0]
    assert torch.allclose(ours, theirs.add(1).div(2).clamp(0, 1).movedim(1, -1), atol=1e-4)
    with pytest.raises(ValueError, match="not a face restorer"):
        nodes.GFPGANFromUpscaleModel.execute(object(), "auto")


def test_restoreformer_from_core_upscale_model_loader(nodes):
    """spandrel also loads RestoreFormer files from models/upscale_models: its state dict is the official one."""
    from spandrel import ModelLoader

    from comfyui_gfpgan.restoreformer_arch.testing import seeded_restoreformer

    network = seeded_restoreformer(0)
    descriptor = ModelLoader().load_from_state_dict(network.state_dict())
    model = nodes.GFPGANFromUpscaleModel.execute(descriptor, "fp32").result[0]
    assert model.info.family.name == "RestoreFormer" and model.info.crop_size == 512
    ours = model.info.network.state_dict()
    assert ours.keys() == network.state_dict().keys()
    assert all(torch.equal(ours[k], v) for k, v in descriptor.model.state_dict().items())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_paste_warps_on_the_compute_device(nodes, loaded, astronaut_rgb, monkeypatch):
    import comfy.model_management

    _, detector = loaded
    image = comfy_image(astronaut_rgb)
    faces, crops, _ = nodes.DetectFaces.execute(image, detector, 0.97, "all", 1, 0, 0, 640).result
    on_cpu, cpu_mask = nodes.PasteFaces.execute(image, faces, crops, 1.0, "feathered", 1.0, True).result
    monkeypatch.setattr(comfy.model_management, "get_torch_device", lambda: torch.device("cuda"))  # the stub says CPU
    on_gpu, gpu_mask = nodes.PasteFaces.execute(image, faces, crops, 1.0, "feathered", 1.0, True).result
    assert on_gpu.device == image.device  # the frames stay where they were; only face windows moved
    assert torch.allclose(on_gpu, on_cpu, atol=2e-3) and torch.allclose(gpu_mask, cpu_mask, atol=1e-3)


# The widgets of the first release, in order: saved workflows store their values by position.
RELEASED_DETECTION_WIDGETS = ["threshold", "selection", "top_k", "min_face_size", "max_face_size", "working_size"]
RELEASED_WIDGETS = {
    "GFPGANDetectFaces": [*RELEASED_DETECTION_WIDGETS, "landmark_smoothing"],
    "GFPGANFaceRestore": ["fidelity", "blend", "mask_type", "feather", "color_correction", *RELEASED_DETECTION_WIDGETS,
                          "noise", "seed", "landmark_smoothing"],
}
NEW_DETECTION_WIDGETS = ["min_eye_distance", "order", "face_indices"]


def test_new_detection_widgets_come_last_with_the_settings_defaults(nodes):
    from dataclasses import fields

    from node_info import WIDGET_TYPES

    from comfyui_gfpgan.face_pipeline.pipeline import DetectSettings

    defaults = {f.name: f.default for f in fields(DetectSettings)}
    # None = the detector's own; a widget needs a number: 0 stands for it
    assert defaults["threshold"] is None
    defaults["threshold"] = 0.0
    by_widget = {"landmark_smoothing": "smoothing"}
    for node in (nodes.DetectFaces, nodes.GFPGANFaceRestore):
        inputs = node_inputs(node)
        name = node.GET_NODE_INFO_V1()["name"]
        widgets = [(n, options, optional) for n, io_type, options, optional in inputs if io_type in WIDGET_TYPES]
        assert [n for n, *_ in widgets] == RELEASED_WIDGETS[name] + NEW_DETECTION_WIDGETS, name
        assert all(optional for n, _, optional in widgets if n in NEW_DETECTION_WIDGETS)  # old API prompts lack them
        for widget, options, _ in widgets:
            field_name = by_widget.get(widget, widget)
            if field_name in defaults:  # the node's default is the Python API's (and the CLI's)
                assert options["default"] == defaults[field_name], (name, widget)


@pytest.mark.slow
def test_detect_node_orders_and_picks_faces(nodes, loaded, small_face_frames):
    _, detector = loaded
    frame, expected = small_face_frames["2048x2048"]
    image = comfy_image(frame)
    every, crops, _ = nodes.DetectFaces.execute(image, detector, 0.97, "all", 1, 0, 0, 0).result
    assert len(every) == 4 and crops.shape[0] == 4  # the default full-size detection finds the 70 px face
    picked, crops, _ = nodes.DetectFaces.execute(image, detector, 0.97, "all", 1, 0, 0, 0, 0.0, 5.0, "size",
                                                 "0").result
    largest = max(every.faces, key=lambda f: f.width * f.height)
    assert len(picked) == 1 and crops.shape[0] == 1 and picked.faces[0].box == pytest.approx(largest.box)
    none, crops, _ = nodes.DetectFaces.execute(image, detector, 0.97, "all", 1, 0, 0, 0, 0.0, 200.0).result
    assert len(none) == 0 and crops.shape[0] == 0  # no face there has eyes 200 px apart


def test_nodes_refuse_impossible_detection_settings_before_working(nodes, loaded, astronaut_rgb):
    model, detector = loaded
    image = comfy_image(astronaut_rgb)
    with pytest.raises(ValueError, match="face indices"):
        nodes.DetectFaces.execute(image, detector, 0.97, "all", 1, 0, 0, 0, 0.0, 5.0, "score", "first")
    with pytest.raises(ValueError, match="above max_face_size"):
        nodes.GFPGANFaceRestore.execute(image, model, detector, 1.0, 1.0, "feathered", 1.0, False, 0.97, "all", 1,
                                        300, 100, 0, "fixed", 0)
    with pytest.raises(ValueError, match="order"):
        nodes.GFPGANFaceRestore.execute(image, model, detector, 1.0, 1.0, "feathered", 1.0, False, 0.97, "all", 1,
                                        0, 0, 0, "fixed", 0, order="random")
