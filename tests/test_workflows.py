"""The shipped UI workflows: known node types, widget values that fit our inputs, consistent links, model list."""

from __future__ import annotations

import json

import pytest

from node_info import WIDGET_TYPES, node_inputs
from paths import REPO_ROOT, TESTS

WORKFLOWS = sorted((REPO_ROOT / "workflows").glob("*.json"))
API_WORKFLOWS = TESTS / "api_workflows"
CORE_NODES = {
    "LoadImage", "SaveImage", "PreviewImage", "MaskToImage", "UpscaleModelLoader", "ImageUpscaleWithModel",
    "CheckpointLoaderSimple", "CLIPTextEncode", "EmptyLatentImage", "KSampler", "VAEDecode", "ImageStitch",
    "LoadVideo", "GetVideoComponents", "CreateVideo", "SaveVideo",
}
MODEL_WIDGETS = {"model_name", "detector_name", "parser_name", "ckpt_name"}


@pytest.fixture(scope="module")
def schemas(comfy_nodes):
    """Node id -> its inputs ``(id, type, options, optional)`` in the frontend's order."""
    return {node.GET_NODE_INFO_V1()["name"]: node_inputs(node) for node in comfy_nodes.NODES}


def test_there_is_a_workflow_per_use_case():
    names = {w.stem for w in WORKFLOWS}
    assert names == {"gfpgan_restore_simple", "gfpgan_modular_detect_restore_paste", "gfpgan_after_upscaler",
                     "gfpgan_after_txt2img", "gfpgan_vs_codeformer_side_by_side", "gfpgan_restore_video"}
    assert names == {w.stem for w in API_WORKFLOWS.glob("gfpgan_*.json")}


def check_widgets(node_id, inputs, node, model_names):
    values = list(node["widgets_values"])
    for name, io_type, options, _ in inputs:
        if io_type not in WIDGET_TYPES:
            continue
        assert values, f"{node_id}: too few widget values"
        value = values.pop(0)
        where = f"{node_id}.{name}={value!r}"
        if io_type == "COMBO":
            assert value in (model_names if name in MODEL_WIDGETS else options["options"]), where
        elif io_type in ("FLOAT", "INT"):
            assert isinstance(value, (int, float)) and not isinstance(value, bool), where
            assert options["min"] <= value <= options["max"], where
            if io_type == "INT":
                assert float(value).is_integer(), where
            if name == "seed":  # the frontend stores its 'control after generate' choice next to a seed
                # fixed, so queueing the same image again reuses the cached result instead of re-running
                assert values.pop(0) == "fixed", where
        elif io_type == "BOOLEAN":
            assert isinstance(value, bool), where
    assert not values, f"{node_id}: extra widget values {values}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_is_loadable(path, schemas):
    workflow = json.loads(path.read_text())
    model_names = {m["name"] for m in workflow["models"]}
    for model in workflow["models"]:
        assert model["url"].startswith("https://") and model["directory"]
        assert model.get("hash_type", "SHA256") == "SHA256" and len(model.get("hash", "0" * 64)) == 64
    nodes = {node["id"]: node for node in workflow["nodes"]}
    assert workflow["last_node_id"] >= max(nodes)
    for node in nodes.values():
        assert node["type"] in schemas or node["type"] in CORE_NODES, node["type"]
        if node["type"] in schemas:
            check_widgets(node["type"], schemas[node["type"]], node, model_names)
            names = [name for name, *_ in schemas[node["type"]]]
            for socket in node["inputs"]:
                assert socket["name"] in names
    for link_id, source, source_slot, target, target_slot, link_type in workflow["links"]:
        output = nodes[source]["outputs"][source_slot]
        socket = nodes[target]["inputs"][target_slot]
        assert link_id in output["links"] and socket["link"] == link_id
        assert output["type"] == socket["type"] == link_type
        if nodes[target]["type"] in schemas:
            expected = next(io_type for name, io_type, *_ in schemas[nodes[target]["type"]] if name == socket["name"])
            assert expected == link_type
    for node in nodes.values():  # every required socket of ours is connected
        if node["type"] in schemas:
            for name, io_type, _, optional in schemas[node["type"]]:
                if io_type not in WIDGET_TYPES and not optional:
                    socket = next(s for s in node["inputs"] if s["name"] == name)
                    assert socket["link"] is not None, f"{node['type']}.{name} is not connected"
    used_models = {v for n in nodes.values() for v in n.get("widgets_values", []) if isinstance(v, str)}
    assert model_names <= used_models


def test_workflow_models_are_the_official_files():
    """What a workflow's Missing Models dialog offers is the release table's URL and hash for that file."""
    from comfyui_gfpgan.model_files.releases import find_release

    for model in json.loads((API_WORKFLOWS / "models.json").read_text()):
        release = find_release(file_name=model["name"])
        if release is None:  # files of other projects (an upscaler, an SD checkpoint)
            assert model["directory"] in ("upscale_models", "checkpoints"), model
            continue
        assert model["url"] == release.url and model.get("hash") == release.sha256, model


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_api_copy_matches_the_ui_workflow(path):
    ui = json.loads(path.read_text())
    api = json.loads((API_WORKFLOWS / path.name).read_text())
    assert sorted(n["type"] for n in ui["nodes"]) == sorted(n["class_type"] for n in api.values())


def test_video_workflow_keeps_the_clips_fps_and_audio_and_smooths_landmarks():
    """The video is rebuilt at the frame rate it was read at, with its own sound; faces do not jitter."""
    api = json.loads((API_WORKFLOWS / "gfpgan_restore_video.json").read_text())
    by_type = {node["class_type"]: node_id for node_id, node in api.items()}
    components, create = by_type["GetVideoComponents"], api[by_type["CreateVideo"]]["inputs"]
    assert api[components]["inputs"]["video"] == [by_type["LoadVideo"], 0]
    assert create["images"] == [by_type["GFPGANFaceRestore"], 0]
    assert create["fps"] == [components, 2] and create["audio"] == [components, 1]
    assert api[by_type["GFPGANFaceRestore"]]["inputs"]["image"] == [components, 0]
    assert api[by_type["GFPGANFaceRestore"]]["inputs"]["landmark_smoothing"] > 0
