"""How the nodes use ComfyUI: model loading, free memory, out-of-memory, Cancel, caching, schema extras.

Runs on tests/comfy_stub (which mirrors ComfyUI 0.38's API) and on a real ComfyUI on PYTHONPATH
(0.3.64 and 0.8.0 tried), where the fallbacks of nodes/compat.py are what runs.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from comfyui_gfpgan.face_restorers import as_face_restorer
from factories import IdentityRestorer
from node_info import node_inputs
from package_imports import PACKAGE, module_files, reachable
from paths import REPO_ROOT


def node_module(name: str):
    """A module of the nodes package (imported once the comfy_nodes fixture has put ComfyUI or its stand-in on the path)."""
    import importlib

    return importlib.import_module(f"comfyui_gfpgan.nodes.{name}")


@pytest.fixture(scope="module")
def nodes(comfy_nodes):
    return comfy_nodes


@pytest.fixture(scope="module")
def loaded(nodes):
    model = nodes.LoadGFPGANModel.execute("GFPGANv1.4-seeded.safetensors", "auto").result[0]
    detector = nodes.LoadFaceDetector.execute("retinaface_mobilenet0.25.safetensors").result[0]
    return model, detector


@pytest.fixture(scope="module")
def photo(astronaut_rgb) -> torch.Tensor:
    return torch.from_numpy(astronaut_rgb)[None].float() / 255


@pytest.fixture
def load_calls(monkeypatch):
    """Every ``load_models_gpu`` call the nodes make (passed on to ComfyUI's own)."""
    import comfy.model_management as model_management

    calls, real = [], model_management.load_models_gpu

    def recording(models, *args, **kwargs):
        calls.append((list(models), kwargs))
        return real(models, *args, **kwargs)

    monkeypatch.setattr(model_management, "load_models_gpu", recording)
    return calls


def out_of_memory() -> torch.cuda.OutOfMemoryError:
    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_all_in_one_loads_its_models_in_one_full_load(nodes, loaded, load_calls):
    model, detector = loaded
    blank = torch.zeros(1, 64, 64, 3)
    nodes.GFPGANFaceRestore.execute(blank, model, detector, 1.0, 1.0, "feathered", 1.0, False, 0.97, "all", 1, 0, 0,
                                    640, "fixed", 0)
    assert len(load_calls) == 1  # a later call could evict what an earlier one loaded
    patchers, options = load_calls[0]
    assert patchers == [model.patcher, detector.patcher] and options.get("force_full_load") is True
    for patched in (model, detector):
        device = patched.patcher.load_device
        assert all(p.device == device for p in patched.patcher.model.parameters())


def test_weights_left_on_the_offload_device_are_moved_or_refused(nodes, monkeypatch):
    """Dynamic VRAM can leave plain modules' weights behind after a full load: they follow, or a clear error."""
    import comfy.model_management as model_management
    from comfyui_gfpgan.nodes.common import load_on_device, patch

    monkeypatch.setattr(model_management, "load_models_gpu", lambda models, **kwargs: None)  # moves nothing
    model = patch(torch.nn.Conv2d(3, 3, 1), None)
    model.patcher.load_device = torch.device("meta")  # a device the weights are not on
    load_on_device(model, None)  # None: an optional model not connected
    assert {p.device.type for p in model.patcher.model.parameters()} == {"meta"}

    stuck = patch(torch.nn.Conv2d(3, 3, 1), None)
    stuck.patcher.load_device = torch.device("meta")
    monkeypatch.setattr(stuck.patcher.model, "to", lambda *args, **kwargs: stuck.patcher.model)
    with pytest.raises(RuntimeError, match="Conv2d did not move to meta"):
        load_on_device(stuck)


def test_chunk_size_counts_the_patchers_free_memory(nodes, monkeypatch):
    import comfy.model_management as model_management
    from comfyui_gfpgan.nodes.common import PatchedModel, face_chunk_size

    network = object()
    on_gpu = SimpleNamespace(device=torch.device("cuda", 0), dtype=torch.float32, crop_size=512)
    monkeypatch.setattr(model_management, "get_free_memory", lambda device=None, torch_free_too=False: 1.75e9)
    with_count = SimpleNamespace(model=network, get_free_memory=lambda device: 3.5e9)  # ComfyUI 0.38's patcher
    assert face_chunk_size(PatchedModel(with_count, on_gpu)) == 8  # 3.5 GB * 0.8 / 0.35 GB per face
    without = SimpleNamespace(model=network)  # ComfyUI 0.3.64 / 0.8.0: no count of its own
    assert face_chunk_size(PatchedModel(without, on_gpu)) == 4


def test_out_of_memory_is_told_as_comfyui_does(nodes, monkeypatch):
    import comfy.model_management as model_management
    from comfyui_gfpgan.nodes.compat import is_out_of_memory

    assert is_out_of_memory(out_of_memory()) and not is_out_of_memory(RuntimeError("shapes do not match"))
    if hasattr(model_management, "is_oom"):
        async_oom = torch.AcceleratorError("CUDA error: out of memory")  # how a later CUDA call reports it
        assert is_out_of_memory(async_oom) == model_management.is_oom(async_oom)
    monkeypatch.delattr(model_management, "is_oom", raising=False)  # ComfyUI before is_oom
    assert is_out_of_memory(out_of_memory()) and not is_out_of_memory(RuntimeError("CUDA error: out of memory"))


def test_out_of_memory_retries_smaller_and_passes_everything_else(nodes):
    import comfy.model_management as model_management
    from comfyui_gfpgan.nodes.common import smaller_after_out_of_memory

    tried = []

    def attempt(size, error=None):
        def run():
            tried.append(size)
            if error is not None:
                raise error
            return size
        return run

    assert smaller_after_out_of_memory([attempt(16, out_of_memory()), attempt(4)]) == 4 and tried == [16, 4]
    with pytest.raises(torch.cuda.OutOfMemoryError):  # the last one's: ComfyUI shows its own advice
        smaller_after_out_of_memory([attempt(2, out_of_memory()), attempt(1, out_of_memory())])
    tried.clear()
    for error in (ValueError("bad input"), model_management.InterruptProcessingException()):
        with pytest.raises(type(error)):
            smaller_after_out_of_memory([attempt(16, error), attempt(4)])
    assert tried == [16, 16], "a smaller attempt ran after an error that is not out-of-memory"


def test_detect_faces_retries_with_fewer_frames_after_out_of_memory(nodes, loaded, photo, monkeypatch):
    import comfyui_gfpgan.nodes.faces as faces_module

    _, detector = loaded
    expected_faces, expected_crops, _ = nodes.DetectFaces.execute(photo, detector, 0.97, "all", 1, 0, 0, 640).result
    real, chunks = faces_module.find_faces_in_frames, []

    def running_out_at_16(*args, frames_per_chunk, **kwargs):
        chunks.append(frames_per_chunk)
        if frames_per_chunk == 16:
            raise out_of_memory()
        return real(*args, frames_per_chunk=frames_per_chunk, **kwargs)

    monkeypatch.setattr(faces_module, "find_faces_in_frames", running_out_at_16)
    faces, crops, _ = nodes.DetectFaces.execute(photo, detector, 0.97, "all", 1, 0, 0, 640).result
    assert chunks == [16, 4] and torch.equal(crops, expected_crops)
    assert [face.box for face in faces.faces] == [face.box for face in expected_faces.faces]


def test_restore_and_paste_retry_after_out_of_memory(nodes, loaded, photo, monkeypatch):
    import comfyui_gfpgan.nodes.faces as faces_module

    model, detector = loaded
    faces, crops, _ = nodes.DetectFaces.execute(photo, detector, 0.97, "all", 1, 0, 0, 640).result
    identity = IdentityRestorer()
    restorer = node_module('common').patch(identity, as_face_restorer(identity))  # same code path, no 512 px network on the CPU
    chunk_sizes, pastes = [], []
    real_restore, real_paste = faces_module.restore_crops, faces_module.paste_faces

    def restore_running_out(*args, chunk_size, **kwargs):
        chunk_sizes.append(chunk_size)
        if len(chunk_sizes) == 1:
            raise out_of_memory()
        return real_restore(*args, chunk_size=chunk_size, **kwargs)

    def paste_running_out_once(frames, faces, crops, **kwargs):
        pastes.append(crops.device)
        if len(pastes) == 1:
            raise out_of_memory()
        return real_paste(frames, faces, crops, **kwargs)

    monkeypatch.setattr(faces_module, "restore_crops", restore_running_out)
    restored = nodes.RestoreFaces.execute(restorer, crops, 1.0, "fixed", 0).result[0]
    assert chunk_sizes[-1] == 1 and len(chunk_sizes) == 2 and torch.allclose(restored, crops, atol=1e-6)
    expected, expected_mask = nodes.PasteFaces.execute(photo, faces, crops, 1.0, "feathered", 1.0, False).result
    monkeypatch.setattr(faces_module, "paste_faces", paste_running_out_once)
    pasted, mask = nodes.PasteFaces.execute(photo, faces, crops, 1.0, "feathered", 1.0, False).result
    assert pastes[-1].type == "cpu" and len(pastes) == 2  # the second try pastes on the CPU
    assert torch.equal(pasted, expected) and torch.equal(mask, expected_mask)


def test_cancel_during_the_all_in_one_is_not_swallowed(nodes, loaded):
    import comfy.model_management as model_management

    model, detector = loaded
    model_management.interrupt_current_processing(True)  # what Cancel does
    try:
        with pytest.raises(model_management.InterruptProcessingException):
            nodes.GFPGANFaceRestore.execute(torch.zeros(2, 64, 64, 3), model, detector, 1.0, 1.0, "feathered", 1.0, False, 0.97, "all",
                                            1, 0, 0, 640, "fixed", 0)
    finally:
        model_management.interrupt_current_processing(False)


def test_loaders_fingerprint_the_file_so_a_replaced_one_reloads(nodes, retinaface_weights):
    import folder_paths

    folder = Path(folder_paths.get_folder_paths("facedetection")[0])
    path = folder / "retinaface-replaced.safetensors"
    shutil.copy(retinaface_weights, path)
    try:
        first = nodes.LoadFaceDetector.fingerprint_inputs(detector_name=path.name)
        assert first is not None and first == nodes.LoadFaceDetector.fingerprint_inputs(detector_name=path.name)
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # replaced by a file of the same size
        assert nodes.LoadFaceDetector.fingerprint_inputs(detector_name=path.name) != first
        with path.open("ab") as file:
            file.write(b"\0")
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # another size, same time
        assert nodes.LoadFaceDetector.fingerprint_inputs(detector_name=path.name) not in (first, None)
    finally:
        path.unlink()
    assert nodes.LoadFaceDetector.fingerprint_inputs(detector_name=path.name) is None
    # every loader of a file has one, taking the inputs as ComfyUI passes them (all, by name)
    assert nodes.LoadGFPGANModel.fingerprint_inputs(model_name="GFPGANv1.4-seeded.safetensors", dtype="auto")
    assert nodes.LoadFaceParser.fingerprint_inputs(parser_name="retinaface_mobilenet0.25.safetensors")


def test_search_aliases_where_comfyui_takes_them(nodes):
    from comfy_api.v0_0_2 import io

    accepted = "search_aliases" in {field.name for field in dataclasses.fields(io.Schema)}
    for node in nodes.NODES:
        info = node.GET_NODE_INFO_V1()
        aliases = info.get("search_aliases") or []
        assert bool(aliases) == accepted, info["name"]  # 0.3.64 and 0.8.0 have no such field: left out
        assert len(set(aliases)) == len(aliases) and all(a == a.lower() for a in aliases)
    if accepted:
        restore = nodes.GFPGANFaceRestore.GET_NODE_INFO_V1()["search_aliases"]
        assert {"face restore", "gfpgan", "restore faces", "face fix"} <= set(restore)


def test_seed_has_its_control_widget_and_segs_are_cores_type(nodes):
    from comfy_api.v0_0_2 import io

    for node in (nodes.RestoreFaces, nodes.GFPGANFaceRestore):
        seed = next(options for name, _, options, _ in node_inputs(node) if name == "seed")
        modes = getattr(io, "ControlAfterGenerate", None)
        assert seed["control_after_generate"] == (True if modes is None else "fixed")
    assert nodes.FacesToSEGS.GET_NODE_INFO_V1()["output"] == ["SEGS"]


def test_seed_control_starts_fixed_where_comfyui_takes_a_mode(nodes, monkeypatch):
    import enum

    from comfy_api.v0_0_2 import io

    class ControlAfterGenerate(str, enum.Enum):  # as ComfyUI 0.38 declares it
        fixed = "fixed"
        randomize = "randomize"

    monkeypatch.setattr(io, "ControlAfterGenerate", ControlAfterGenerate, raising=False)
    from comfyui_gfpgan.nodes import compat

    assert compat.seed_control() is ControlAfterGenerate.fixed
    monkeypatch.delattr(io, "ControlAfterGenerate")
    assert compat.seed_control() is True
    assert node_module('segs').SEGS is getattr(io, "SEGS", node_module('segs').SEGS)


def test_detect_faces_shows_its_preview_on_the_node(nodes, loaded, photo):
    import folder_paths
    from PIL import Image

    _, detector = loaded
    output = nodes.DetectFaces.execute(photo, detector, 0.97, "all", 1, 0, 0, 640)
    preview = output.result[2]
    shown = output.ui.as_dict()["images"]
    assert len(shown) == 1 and shown[0]["type"] == "temp"
    saved = Image.open(Path(folder_paths.get_temp_directory()) / shown[0]["subfolder"] / shown[0]["filename"])
    pixels = torch.from_numpy(np.array(saved.convert("RGB"))).float() / 255
    assert (pixels - preview[0]).abs().max() <= 1 / 255 + 1e-6  # the preview output, as 8-bit PNG
    many = nodes.DetectFaces.execute(torch.zeros(10, 32, 32, 3), detector, 0.97, "all", 1, 0, 0, 640)
    assert len(many.ui.as_dict()["images"]) == node_module('common').PREVIEW_FRAMES < 10  # a long video: the first frames


def test_detect_faces_crops_at_the_models_size_and_paste_takes_them(nodes, loaded, photo):
    _, detector = loaded
    small = IdentityRestorer()
    small.out_size = 256
    model = node_module('common').patch(small, as_face_restorer(small))
    faces, crops, _ = nodes.DetectFaces.execute(photo, detector, 0.97, "all", 1, 0, 0, 0, gfpgan_model=model).result
    assert crops.shape == (1, 256, 256, 3) and faces.crop_size == 256
    _, default_crops, _ = nodes.DetectFaces.execute(photo, detector, 0.97, "all", 1, 0, 0, 0).result
    assert default_crops.shape == (1, 512, 512, 3)
    restored = nodes.RestoreFaces.execute(model, crops, 1.0, "fixed", 0).result[0]
    pasted, mask = nodes.PasteFaces.execute(photo, faces, restored, 1.0, "feathered", 1.0, False).result
    # the identity restorer gives back the input: the paste-back of 256 px crops changes the frame only by resampling
    assert mask.amax() > 0.99 and (pasted - photo).abs().mean() < 0.01


def test_restore_faces_says_which_crops_a_model_needs(nodes, loaded):
    model, _ = loaded
    with pytest.raises(ValueError, match=r"must be 512x512 \(use Detect Faces\), got 256x256"):
        nodes.RestoreFaces.execute(model, torch.rand(1, 256, 256, 3), 1.0, "fixed", 0)
    small = IdentityRestorer()
    small.out_size = 256
    with pytest.raises(ValueError) as error:
        nodes.RestoreFaces.execute(node_module('common').patch(small, as_face_restorer(small)), torch.rand(1, 512, 512, 3), 1.0, "fixed", 0)
    message = str(error.value)
    assert "restores 256x256" in message and "got 512x512" in message and "Face Restore All-in-One (GFPGAN)" in message
    assert "use Detect Faces)" not in message  # Detect Faces makes 512 px crops: no help for this model


def test_every_node_has_a_help_page_naming_its_inputs(nodes):
    """ComfyUI's node library shows WEB_DIRECTORY/docs/<node id>.md in its help panel."""
    import comfyui_gfpgan

    docs = Path(comfyui_gfpgan.__file__).parent / comfyui_gfpgan.WEB_DIRECTORY / "docs"
    infos = {node.GET_NODE_INFO_V1()["name"]: node for node in nodes.NODES}
    assert {page.stem for page in docs.glob("*.md")} == set(infos)
    for node_id, node in infos.items():
        text = (docs / f"{node_id}.md").read_text()
        assert text.startswith(f"# {node.GET_NODE_INFO_V1()['display_name']}\n"), node_id
        missing = [name for name, *_ in node_inputs(node) if f"**{name}**" not in text]
        assert not missing, f"{node_id}.md does not describe {missing}"


def test_registry_metadata_is_complete():
    import tomllib

    root = REPO_ROOT
    config = tomllib.loads((root / "pyproject.toml").read_text())
    comfy, repository = config["tool"]["comfy"], config["project"]["urls"]["Repository"]
    assert repository.startswith("https://github.com/") and repository.endswith("/comfyui-gfpgan")
    assert comfy["DisplayName"] and "PublisherId" in comfy  # the publisher's id is filled in at publish time
    icon = comfy["Icon"]
    assert icon.startswith("https://raw.githubusercontent.com/") and (root / icon.split("/main/", 1)[1]).is_file()
    assert comfy["requires-comfyui"] == ">=0.3.64"  # the oldest ComfyUI these tests ran against


def test_registry_archive_leaves_out_tests_and_holds_what_the_nodes_need():
    """comfy-cli archives the git-tracked files minus .comfyignore: no tests or benchmarks, every file the pack
    loads (its modules, web/, workflows/) kept."""
    import subprocess

    root = REPO_ROOT
    tracked = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    ignored = [line.strip().rstrip("/") + "/" for line in (root / ".comfyignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    archived = [path for path in tracked if not any(path.startswith(prefix) for prefix in ignored)]
    assert not [p for p in archived if p.startswith(("tests/", "benchmarks/"))]
    for needed in ("__init__.py", "nodes/extension.py", "web/fidelity_defaults.js", "web/peer_workflows.js",
                   "workflows/gfpgan_restore_simple.json", "web/docs/GFPGANFaceRestore.md", "requirements.txt"):
        assert needed in archived or not (root / needed).exists(), needed


def test_no_node_or_route_reaches_network_code():
    """The Comfy Registry scans for network use: the only download code (the CLI's) is not imported by nodes/."""
    reached = {module.removeprefix(PACKAGE + ".") for module in reachable(f"{PACKAGE}.nodes.extension")}
    assert {"nodes.peers", "nodes.routes", "face_pipeline.pipeline"} <= reached  # the walk follows imports
    assert not [module for module in reached if module.startswith("jobs")]  # the CLI (and its download) and the Ray job
    for module in reached:
        source = module_files()[f"{PACKAGE}.{module}"].read_text()
        assert "urlopen" not in source and "import requests" not in source and "subprocess" not in source, module
