"""The route behind the frontend's fidelity defaults: which family a listed file is, from its keys alone."""

from __future__ import annotations

import os

import pytest
import torch

from comfyui_gfpgan.codeformer_arch.testing import seeded_codeformer
from comfyui_gfpgan.gpen_arch.testing import seeded_gpen_network


@pytest.fixture(scope="module")
def folder(comfy_nodes):
    import folder_paths

    return folder_paths.get_folder_paths("facerestore_models")[0]


@pytest.fixture
def listed(folder):
    """Puts files in the model folder for one test: ``listed(name, state_dict_or_bytes)``; removed after it,
    as other node tests list the folder."""
    made = []

    def put(name, content):
        path = os.path.join(folder, name)
        if isinstance(content, bytes):
            with open(path, "wb") as handle:
                handle.write(content)
        else:
            torch.save(content, path)
        made.append(path)
        return path

    yield put
    for path in made:
        os.remove(path)


def _state_dict(network):
    return {key: value.contiguous() for key, value in network.state_dict().items()}


def test_model_info_names_the_family_its_knob_and_default(comfy_nodes, listed):
    from comfyui_gfpgan.nodes.routes import model_info

    listed("codeformer-v0.1.0.pth", {"params_ema": _state_dict(seeded_codeformer(seed=3))})
    listed("GPEN-BFR-256.pth", _state_dict(seeded_gpen_network(256)))
    assert model_info("GFPGANv1.4-seeded.safetensors") == ({
        "family": "GFP-GAN", "fidelity": True, "default_fidelity": 1.0,
        "note": "the CS-SFT weight (1 = the official output)"}, 200)
    info, status = model_info("codeformer-v0.1.0.pth")
    assert status == 200 and (info["family"], info["fidelity"], info["default_fidelity"]) == ("CodeFormer", True, 0.5)
    assert model_info("GPEN-BFR-256.pth") == ({
        "family": "GPEN", "fidelity": False, "default_fidelity": None, "note": "GPEN has no fidelity knob"}, 200)


def test_model_info_follows_a_replaced_file(comfy_nodes, listed):
    from comfyui_gfpgan.nodes.routes import model_info

    path = listed("renamed.pth", _state_dict(seeded_gpen_network(256)))
    assert model_info("renamed.pth")[0]["family"] == "GPEN"
    torch.save({"params_ema": _state_dict(seeded_codeformer(seed=3))}, path)
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))  # a new file on disk
    assert model_info("renamed.pth")[0]["family"] == "CodeFormer"


def test_model_info_refuses_unlisted_and_foreign_files_in_one_line(comfy_nodes, listed):
    from comfyui_gfpgan.nodes.routes import model_info

    body, status = model_info("../../etc/passwd")
    assert status == 404 and body == {"error": "'../../etc/passwd' is not a file listed in facerestore_models"}
    listed("broken.pth", b"not a checkpoint")
    body, status = model_info("broken.pth")
    assert status == 404 and "not a PyTorch checkpoint" in body["error"] and "\n" not in body["error"]
    listed("detector.pth", {"ClassHead.0.conv1x1.weight": torch.zeros(4, 64, 1, 1)})
    body, status = model_info("detector.pth")
    assert status == 404 and "looks like a RetinaFace face detector" in body["error"]


def test_routes_stay_out_of_the_way_without_a_server(comfy_nodes, monkeypatch):
    import sys

    from comfyui_gfpgan.nodes import routes

    monkeypatch.setattr(routes, "_registered", False)
    monkeypatch.setitem(sys.modules, "server", None)  # no ComfyUI server in this process
    assert routes.register_routes() is False
