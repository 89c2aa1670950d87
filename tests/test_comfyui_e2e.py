"""End to end in a real ComfyUI: start it with this pack linked, post the API workflows, check the outputs.

Runs only when a ComfyUI checkout is given: COMFYUI_DIR (the checkout) and COMFYUI_PYTHON
(a Python with ComfyUI's requirements and this pack's dependencies). See the README.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from paths import REPO_ROOT, TESTS

API_WORKFLOWS = TESTS / "api_workflows"

pytestmark = pytest.mark.comfyui


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, payload: dict | None = None) -> dict:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def comfyui(tmp_path_factory, official_weight_files, retinaface_weights, shared_dir):
    comfy_dir, python = os.environ.get("COMFYUI_DIR"), os.environ.get("COMFYUI_PYTHON")
    if not comfy_dir or not python:
        pytest.skip("set COMFYUI_DIR and COMFYUI_PYTHON to run against a real ComfyUI")
    comfy_dir = Path(comfy_dir)
    link = comfy_dir / "custom_nodes" / "comfyui-gfpgan"
    made_link = not link.exists() and not link.is_symlink()
    if made_link:
        link.symlink_to(REPO_ROOT)
    elif link.resolve() != REPO_ROOT:
        pytest.skip(f"{link} is another copy of the pack ({link.resolve()}); this test runs the one at {REPO_ROOT}")
    root = tmp_path_factory.mktemp("comfyui")
    models = root / "models"
    for folder in ("facerestore", "facexlib", "upscale"):
        (models / folder).mkdir(parents=True)
    shutil.copy(official_weight_files["pth"], models / "facerestore" / "GFPGANv1.4-seeded.pth")
    # The other families users keep beside it: a CodeFormer release and an ONNX graph (as ReActor / FaceFusion).
    from comfyui_gfpgan.codeformer_arch.testing import seeded_codeformer
    from factories import WeightedStandIn, export_onnx

    codeformer = {k: v.contiguous() for k, v in seeded_codeformer(seed=3).state_dict().items()}
    torch.save({"params_ema": codeformer}, models / "facerestore" / "codeformer-seeded.pth")
    export_onnx(WeightedStandIn(seed=5), (torch.zeros(1, 3, 512, 512), torch.tensor([0.5], dtype=torch.float64)),
                models / "facerestore" / "codeformer-standin.onnx", ["input", "weight"])
    shutil.copy(retinaface_weights, models / "facexlib" / "retinaface_mobilenet0.25.safetensors")
    # What facerestore_cf's and ReActor's users keep: the detector under facexlib's name (the MobileNet weights:
    # the keys tell the backbone, not the name) and CodeFormer under the name facerestore_cf's workflows use.
    shutil.copy(retinaface_weights, models / "facexlib" / "detection_Resnet50_Final.safetensors")
    shutil.copy(models / "facerestore" / "codeformer-seeded.pth", models / "facerestore" / "codeformer-v0.1.0.pth")
    from spandrel.architectures.Compact.__arch.SRVGG import SRVGGNetCompact

    torch.manual_seed(0)
    upscaler = SRVGGNetCompact(num_in_ch=3, num_out_ch=3, num_feat=16, num_conv=2, upscale=2, act_type="prelu")
    torch.save({"params": upscaler.state_dict()}, models / "upscale" / "compact_x2-seeded.pth")
    # The YAML keys a user would write to share model folders with other tools.
    (root / "extra_model_paths.yaml").write_text(
        f"gfpgan_test:\n    base_path: {models}\n    facerestore_models: facerestore\n"
        f"    facedetection: facexlib\n    upscale_models: upscale\n"
    )
    inputs, outputs = root / "input", root / "output"
    inputs.mkdir()
    import cv2

    photo = cv2.imread(str(shared_dir / "images" / "grace_hopper.jpg"))
    cv2.imwrite(str(inputs / "portrait.png"), photo)  # lossless
    cv2.imwrite(str(inputs / "no_face.png"), photo[400:])  # below the face (her uniform): nothing to detect
    port = _free_port()
    log = open(root / "comfyui.log", "w")
    process = subprocess.Popen(
        [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
         "--extra-model-paths-config", str(root / "extra_model_paths.yaml"),
         "--input-directory", str(inputs), "--output-directory", str(outputs)],
        cwd=comfy_dir, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                _request(f"{url}/system_stats")
                break
            except OSError:
                if process.poll() is not None:
                    pytest.fail(f"ComfyUI exited: {(root / 'comfyui.log').read_text()[-3000:]}")
                time.sleep(1)
        yield {"url": url, "log": root / "comfyui.log", "outputs": outputs, "models": models}
    finally:
        process.terminate()
        process.wait(timeout=30)
        if made_link:  # only the link this test made; a user's own checkout or link stays
            link.unlink()


def _run_entry(comfyui, workflow: dict, timeout: float = 300) -> dict:
    """The history entry of a finished, successful run of ``workflow``."""
    prompt_id = _request(f"{comfyui['url']}/prompt", {"prompt": workflow, "client_id": "e2e"})["prompt_id"]
    deadline = time.time() + timeout
    while time.time() < deadline:
        history = _request(f"{comfyui['url']}/history/{prompt_id}")
        if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
            entry = history[prompt_id]
            assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[-2000:]
            return entry
        time.sleep(1)
    pytest.fail("workflow did not finish in time")


def _run(comfyui, workflow: dict, timeout: float = 300) -> dict:
    return _run_entry(comfyui, workflow, timeout)["outputs"]


def _cached_nodes(entry: dict) -> set[str]:
    """The nodes of a run that ComfyUI answered from its cache instead of running them."""
    return {node for kind, data in entry["status"]["messages"] if kind == "execution_cached" for node in data["nodes"]}


def _load(name: str, restorer: str = "GFPGANv1.4-seeded.pth") -> dict:
    """A shipped API workflow with the test's model files (``restorer`` for the GFPGAN loader; the CodeFormer
    loader of the side-by-side workflow gets the seeded CodeFormer)."""
    workflow = json.loads((API_WORKFLOWS / f"{name}.json").read_text())
    for node in workflow.values():
        inputs = node["inputs"]
        if node["class_type"] == "GFPGANModelLoader":
            codeformer = inputs["model_name"].startswith("codeformer")
            inputs["model_name"] = "codeformer-seeded.pth" if codeformer else restorer
        elif node["class_type"] == "GFPGANFaceDetectorLoader":
            inputs["detector_name"] = "retinaface_mobilenet0.25.safetensors"
        elif node["class_type"] == "UpscaleModelLoader":
            inputs["model_name"] = "compact_x2-seeded.pth"
    return workflow


def _saved_images(comfyui, outputs: dict) -> list[Path]:
    files = []
    for node_output in outputs.values():
        for image in node_output.get("images", []):
            if image["type"] == "output":
                files.append(comfyui["outputs"] / image["subfolder"] / image["filename"])
    return files


def test_pack_imports_cleanly(comfyui):
    log = comfyui["log"].read_text()
    assert "comfyui-gfpgan" in log
    assert not [line for line in log.splitlines() if "IMPORT FAILED" in line and "gfpgan" in line]
    info = _request(f"{comfyui['url']}/object_info")
    ours = {name for name, spec in info.items() if "comfyui-gfpgan" in spec["python_module"]}
    assert ours == {"GFPGANModelLoader", "GFPGANFaceDetectorLoader", "GFPGANFaceParserLoader", "GFPGANDetectFaces",
                    "GFPGANRestoreFaces", "GFPGANPasteFaces", "GFPGANFaceRestore", "GFPGANFromUpscaleModel",
                    "GFPGANFacesToSEGS", "GFPGANFilterFacesBySEGS",
                    # twins of other packs' nodes, for their workflows (nodes/peers.py)
                    "GFPGANPeerFaceRestoreModelLoader", "GFPGANPeerFaceRestoreCFWithModel", "GFPGANPeerCropFace",
                    "GFPGANPeerReActorRestoreFace", "GFPGANPeerReActorRestoreFaceAdvanced", "GFPGANPeerGFPGANRestorer"}
    spec = info["GFPGANModelLoader"]["input"]["required"]["model_name"]
    options = spec[1]["options"] if spec[0] == "COMBO" else spec[0]
    # found through extra_model_paths.yaml, every family listed
    assert {"GFPGANv1.4-seeded.pth", "codeformer-seeded.pth", "codeformer-standin.onnx"} <= set(options)


def test_workflows_are_listed_as_the_packs_templates(comfyui):
    """ComfyUI offers the files in workflows/ under the pack's name in its template browser."""
    shipped = sorted(p.stem for p in (REPO_ROOT / "workflows").glob("*.json"))
    assert sorted(_request(f"{comfyui['url']}/workflow_templates")["comfyui-gfpgan"]) == shipped
    for name in shipped:
        served = _request(f"{comfyui['url']}/api/workflow_templates/comfyui-gfpgan/{name}.json")
        assert served == json.loads((REPO_ROOT / "workflows" / f"{name}.json").read_text())


@pytest.mark.parametrize("name,scale,restorer", [
    ("gfpgan_restore_simple", 1, "GFPGANv1.4-seeded.pth"),
    ("gfpgan_modular_detect_restore_paste", 1, "GFPGANv1.4-seeded.pth"),
    ("gfpgan_after_upscaler", 2, "GFPGANv1.4-seeded.pth"),
    # the other families' files through the all-in-one node and the modular nodes
    ("gfpgan_restore_simple", 1, "codeformer-seeded.pth"),
    ("gfpgan_modular_detect_restore_paste", 1, "codeformer-seeded.pth"),
    ("gfpgan_restore_simple", 1, "codeformer-standin.onnx"),
    ("gfpgan_modular_detect_restore_paste", 1, "codeformer-standin.onnx"),
])
def test_api_workflows_restore_the_face(comfyui, shared_dir, name, scale, restorer):
    import cv2

    workflow = _load(name, restorer)
    if restorer.startswith("codeformer"):  # at CodeFormer's default w (the stand-in graph returns its input at w = 1)
        for node in workflow.values():
            if "fidelity" in node["inputs"]:
                node["inputs"]["fidelity"] = 0.5
    outputs = _run(comfyui, workflow)
    files = _saved_images(comfyui, outputs)
    assert len(files) == 1
    for node_id, node in workflow.items():
        if node["class_type"] == "GFPGANDetectFaces":  # its detection preview, shown on the node
            shown = outputs[node_id]["images"]
            assert len(shown) == 1 and shown[0]["type"] == "temp" and shown[0]["filename"].endswith(".png")
    result = cv2.imread(str(files[0]))
    original = cv2.imread(str(shared_dir / "images" / "grace_hopper.jpg"))
    assert result.shape == (original.shape[0] * scale, original.shape[1] * scale, 3)
    if scale == 1:
        changed = np.abs(result.astype(int) - original.astype(int)).max(axis=2) > 8
        ys, xs = np.nonzero(changed)
        # only the face's aligned region (box 177..354 x 106..328, plus the crop margin) changed
        assert changed.mean() > 0.05 and 200 < xs.mean() < 330 and 130 < ys.mean() < 300
        assert not changed[:30].any() and not changed[380:].any()
        assert not changed[:, :90].any() and not changed[:, 430:].any()


def test_gfpgan_and_codeformer_side_by_side(comfyui, shared_dir):
    """The shipped side-by-side workflow: one detection, two models, the results stitched left | right."""
    import cv2

    files = _saved_images(comfyui, _run(comfyui, _load("gfpgan_vs_codeformer_side_by_side")))
    original = cv2.imread(str(shared_dir / "images" / "grace_hopper.jpg")).astype(int)
    stitched = cv2.imread(str(files[0])).astype(int)
    height, width = original.shape[:2]
    assert len(files) == 1 and stitched.shape == (height, 2 * width + 8, 3)
    left, right = stitched[:, :width], stitched[:, width + 8:]
    for half in (left, right):  # each half: the photo, changed only in the face's region
        changed = np.abs(half - original).max(axis=2) > 8
        assert changed.mean() > 0.05 and not changed[:30].any() and not changed[380:].any()
    assert np.abs(left - right).max(axis=2)[130:300, 200:330].mean() > 8  # two models, two different faces


@pytest.mark.parametrize("name", ["gfpgan_restore_simple", "gfpgan_modular_detect_restore_paste"])
def test_image_without_faces_passes_through(comfyui, name):
    import cv2

    workflow = _load(name)
    workflow["1"]["inputs"]["image"] = "no_face.png"
    files = _saved_images(comfyui, _run(comfyui, workflow))
    original = cv2.imread(str(comfyui["outputs"].parent / "input" / "no_face.png"))
    assert len(files) == 1 and np.array_equal(cv2.imread(str(files[0])), original)


def test_help_pages_are_served(comfyui):
    """The node library's help panel reads /extensions/<pack folder>/docs/<node id>.md."""
    for page in (REPO_ROOT / "web" / "docs").glob("*.md"):
        with urllib.request.urlopen(f"{comfyui['url']}/extensions/comfyui-gfpgan/docs/{page.name}", timeout=30) as r:
            assert r.read().decode() == page.read_text()


def test_replaced_model_file_is_loaded_again(comfyui):
    """A loader's cached model is reused until its file changes on disk (same name, new file)."""
    workflow = _load("gfpgan_restore_simple")
    loaders = {node["class_type"]: key for key, node in workflow.items() if node["class_type"].endswith("Loader")}
    _run(comfyui, workflow)
    assert {loaders["GFPGANModelLoader"], loaders["GFPGANFaceDetectorLoader"]} <= _cached_nodes(_run_entry(comfyui, workflow))
    weights = comfyui["models"] / "facerestore" / "GFPGANv1.4-seeded.pth"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # as when a file is copied over it
    cached = _cached_nodes(_run_entry(comfyui, workflow))
    assert loaders["GFPGANModelLoader"] not in cached and loaders["GFPGANFaceDetectorLoader"] in cached


def test_missing_model_is_refused_when_queued(comfyui):
    """A model file that is not there stops the prompt before any node runs, naming the folders and the URL."""
    workflow = _load("gfpgan_restore_simple")
    loader = next(key for key, node in workflow.items() if node["class_type"] == "GFPGANModelLoader")
    workflow[loader]["inputs"]["model_name"] = "GFPGANv1.4.pth"
    request = urllib.request.Request(f"{comfyui['url']}/prompt", data=json.dumps({"prompt": workflow}).encode(),
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=30)
    errors = json.loads(error.value.read())["node_errors"]
    assert set(errors) == {loader}
    details = errors[loader]["errors"][0]["details"]
    assert "facerestore" in details and "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth" in details


def test_txt2img_workflow_validates(comfyui):
    """No SD checkpoint here: the graph must still pass ComfyUI's validation up to the missing file."""
    workflow = _load("gfpgan_after_txt2img")
    request = urllib.request.Request(f"{comfyui['url']}/prompt", data=json.dumps({"prompt": workflow}).encode(),
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=30)
    body = json.loads(error.value.read())
    bad_nodes = {node_id for node_id in body.get("node_errors", {})}
    assert bad_nodes <= {"1"}, body  # only the checkpoint loader (its file is absent)


def test_faces_pass_through_segs_unchanged(comfyui):
    """Detect -> Faces to SEGS -> Keep Faces inside SEGS -> restore -> paste gives the modular graph's image."""
    import cv2

    plain = _load("gfpgan_modular_detect_restore_paste")
    via_segs = _load("gfpgan_modular_detect_restore_paste")
    via_segs["7"]["inputs"]["filename_prefix"] = "gfpgan/via_segs"
    via_segs["20"] = {"class_type": "GFPGANFacesToSEGS",
                      "inputs": {"image": ["1", 0], "faces": ["4", 0], "crop_factor": 3.0, "frame": 0}}
    via_segs["21"] = {"class_type": "GFPGANFilterFacesBySEGS",
                      "inputs": {"faces": ["4", 0], "face_crops": ["4", 1], "segs": ["20", 0]}}
    via_segs["5"]["inputs"]["face_crops"] = ["21", 1]
    via_segs["6"]["inputs"]["faces"] = ["21", 0]
    images = [cv2.imread(str(_saved_images(comfyui, _run(comfyui, graph))[0])) for graph in (plain, via_segs)]
    assert np.array_equal(images[0], images[1])


IMPACT_NODES = {"SegsToCombinedMask", "SEGSPaste", "MaskToSEGS", "ImpactSEGSOrderedFilter", "ImpactSEGSLabelFilter"}


def test_segs_work_with_impact_pack_nodes(comfyui, shared_dir):
    """Our SEGS through Impact Pack's own nodes, and Impact's SEGS into Keep Faces inside SEGS.

    Runs when the ComfyUI checkout has ComfyUI-Impact-Pack in custom_nodes (it is not on PyPI).
    """
    import cv2

    if not IMPACT_NODES <= set(_request(f"{comfyui['url']}/object_info")):
        pytest.skip("Impact Pack is not installed in this ComfyUI")
    plain = _load("gfpgan_modular_detect_restore_paste")
    graph = _load("gfpgan_modular_detect_restore_paste")
    graph["7"]["inputs"]["filename_prefix"] = "gfpgan/impact_restored"
    graph.update({
        "20": {"class_type": "GFPGANFacesToSEGS",
               "inputs": {"image": ["1", 0], "faces": ["4", 0], "crop_factor": 3.0, "frame": 0}},
        "21": {"class_type": "ImpactSEGSOrderedFilter", "inputs": {
            "segs": ["20", 0], "target": "area(=w*h)", "order": True, "take_start": 0, "take_count": 1}},
        "22": {"class_type": "ImpactSEGSLabelFilter", "inputs": {"segs": ["21", 0], "preset": "face", "labels": "face"}},
        "23": {"class_type": "SegsToCombinedMask", "inputs": {"segs": ["22", 0]}},
        "24": {"class_type": "MaskToImage", "inputs": {"mask": ["23", 0]}},
        "25": {"class_type": "SaveImage", "inputs": {"images": ["24", 0], "filename_prefix": "gfpgan/impact_mask"}},
        "26": {"class_type": "SEGSPaste", "inputs": {"image": ["1", 0], "segs": ["22", 0], "feather": 5, "alpha": 255}},
        "27": {"class_type": "SaveImage", "inputs": {"images": ["26", 0], "filename_prefix": "gfpgan/impact_paste"}},
        # Impact's own SEGS (from the combined mask) pick the faces to restore
        "28": {"class_type": "MaskToSEGS", "inputs": {"mask": ["23", 0], "combined": False, "crop_factor": 3.0,
                                                       "bbox_fill": False, "drop_size": 10, "contour_fill": False}},
        "29": {"class_type": "GFPGANFilterFacesBySEGS",
               "inputs": {"faces": ["4", 0], "face_crops": ["4", 1], "segs": ["28", 0]}},
    })
    graph["5"]["inputs"]["face_crops"] = ["29", 1]
    graph["6"]["inputs"]["faces"] = ["29", 0]
    outputs = _run(comfyui, graph)
    saved = {path.name.split("_0")[0]: cv2.imread(str(path)) for path in _saved_images(comfyui, outputs)}
    original = cv2.imread(str(shared_dir / "images" / "grace_hopper.jpg"))

    ys, xs = np.nonzero(saved["impact_mask"][:, :, 0] > 127)  # the face box, 177.7,106.5 - 353.9,327.7
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (177, 106, 354, 328)
    assert np.abs(saved["impact_paste"].astype(int) - original.astype(int)).max() <= 1  # crops pasted back as they were
    expected = cv2.imread(str(_saved_images(comfyui, _run(comfyui, plain))[0]))
    assert np.array_equal(saved["impact_restored"], expected)  # Impact's segment kept the face


def _clip_contents(python: str, video: Path, into: Path) -> dict:
    """Frames (uint8 RGB), fps and audio of a video file, read by PyAV in ComfyUI's Python."""
    subprocess.run([python, str(TESTS / "video_clips.py"), "read", str(video), str(into)], check=True)
    with np.load(into) as data:
        return {key: data[key] for key in data.files}


def test_video_workflow_restores_the_faces_and_keeps_frames_fps_and_audio(comfyui, shared_dir, tmp_path):
    """LoadVideo -> GetVideoComponents -> GFPGAN Face Restore (landmark smoothing) -> CreateVideo -> SaveVideo."""
    import video_clips

    python = os.environ["COMFYUI_PYTHON"]
    clip = comfyui["outputs"].parent / "input" / "portrait_clip.mp4"
    subprocess.run([python, str(TESTS / "video_clips.py"), "make",
                    str(shared_dir / "images" / "astronaut.png"), str(clip)], check=True)
    files = _saved_images(comfyui, _run(comfyui, _load("gfpgan_restore_video")))
    assert len(files) == 1 and files[0].suffix == ".mp4"
    before = _clip_contents(python, clip, tmp_path / "input.npz")  # the frames as ComfyUI decoded them
    after = _clip_contents(python, files[0], tmp_path / "output.npz")
    assert after["frames"].shape == before["frames"].shape == (video_clips.FRAMES, 512, 512, 3)
    assert after["fps"] == before["fps"] == video_clips.FPS
    # the audio track passed through: the same tone, the clip's length
    assert after["sample_rate"] == video_clips.SAMPLE_RATE
    assert len(after["audio"]) >= 0.9 * video_clips.SAMPLE_RATE * video_clips.FRAMES / video_clips.FPS
    spectrum = np.abs(np.fft.rfft(after["audio"]))
    assert abs(np.argmax(spectrum) * after["sample_rate"] / len(after["audio"]) - video_clips.TONE_HZ) < 5
    # SaveVideo encodes again (x264's defaults): measured 2-4 levels mean, 13 at the 99th percentile, where
    # nothing was restored; a restored face here is ~70 levels off over its box.
    difference = np.abs(after["frames"].astype(int) - before["frames"].astype(int)).mean(axis=3)
    for i in range(video_clips.FRAMES):
        x0, x1 = 178 + 3 * i, 273 + 3 * i  # the astronaut's face box (shared/README.md), moved 3 px per frame
        if i in video_clips.FACELESS:  # unchanged but for the second encoding
            assert difference[i].mean() < 5 and np.percentile(difference[i], 99) < 25, i
        else:  # the face changed; the frame's top rows and bottom half (her suit) did not
            assert difference[i, 60:175, x0:x1].mean() > 30, i
            assert difference[i, :30].mean() < 5 and difference[i, 300:].mean() < 5, i


def test_model_info_route_names_each_files_family(comfyui):
    """The route behind the frontend's fidelity defaults, on the server ComfyUI runs."""
    def info(name: str) -> dict:
        return _request(f"{comfyui['url']}/gfpgan/model_info?model_name={urllib.parse.quote(name)}")

    assert info("GFPGANv1.4-seeded.pth")["default_fidelity"] == 1.0
    assert (info("codeformer-seeded.pth")["family"], info("codeformer-seeded.pth")["default_fidelity"]) == ("CodeFormer", 0.5)
    assert info("codeformer-standin.onnx")["default_fidelity"] == 0.5  # a CodeFormer export: its weight input
    with pytest.raises(urllib.error.HTTPError) as refused:
        info("../extra_model_paths.yaml")
    assert refused.value.code == 404


def test_fidelity_widget_follows_the_models_family_in_the_frontend(comfyui):
    """In the real frontend: a new restore node given CodeFormer shows 0.5, GFP-GAN 1.0; a value the user set
    and the values of a loaded workflow are kept."""
    node_path = os.environ.get("NODE_PATH", "")
    if not shutil.which("node") or not Path("/usr/bin/chromium").exists() or not any(
            (Path(p) / "playwright-core").is_dir() for p in node_path.split(os.pathsep) if p):
        pytest.skip("needs node, /usr/bin/chromium and playwright-core on NODE_PATH")
    script = TESTS / "browser" / "fidelity_defaults.mjs"
    run = subprocess.run(["node", str(script), comfyui["url"], "GFPGANv1.4-seeded.pth", "codeformer-seeded.pth"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    steps = json.loads(run.stdout.strip().splitlines()[-1])
    assert steps.pop("errors") == [] and all("fidelity_defaults" not in error for error in steps.pop("startup"))
    assert steps == {
        "new_nodes": [1.0, 1.0],
        "connected_to_codeformer": 0.5,
        "picked_gfpgan": 1.0,
        "own_value_then_codeformer": 0.7,
        "modular_connected_to_codeformer": 0.5,
        "queued": [0.7, 0.5],  # the prompt carries what the widgets show
        "loaded": [1.0, 0.5],  # as saved: nothing moves while a workflow loads
        "loaded_then_gfpgan": [1.0, 1.0],  # the one at CodeFormer's default follows, the user's 1.0 stays
    }


PEER_WORKFLOWS = TESTS / "peer_workflows"


def _peer_prompt(name: str) -> dict:
    """An API prompt as facerestore_cf's / ReActor's users post it, with this test's image and model files."""
    prompt = json.loads((PEER_WORKFLOWS / f"{name}.json").read_text(encoding="utf-8"))
    for node in prompt.values():
        inputs = node["inputs"]
        if node["class_type"] == "LoadImage":
            inputs["image"] = "portrait.png"
        if inputs.get("model") == "GFPGANv1.4.pth":  # that name is the missing-file test's
            inputs["model"] = "GFPGANv1.4-seeded.pth"
    return prompt


def _has_node_replacement(comfyui) -> bool:
    try:
        return bool(_request(f"{comfyui['url']}/node_replacements"))
    except urllib.error.HTTPError:
        return False


def _assert_face_restored(comfyui, shared_dir, outputs: dict) -> None:
    import cv2

    files = _saved_images(comfyui, outputs)
    result = cv2.imread(str(files[0]))
    original = cv2.imread(str(shared_dir / "images" / "grace_hopper.jpg"))
    assert len(files) == 1 and result.shape == original.shape
    changed = np.abs(result.astype(int) - original.astype(int)).max(axis=2) > 8
    ys, xs = np.nonzero(changed)
    assert changed.mean() > 0.03 and 200 < xs.mean() < 330 and 130 < ys.mean() < 300  # the face, nothing else
    assert not changed[:30].any() and not changed[380:].any()


@pytest.mark.parametrize("name", ["facerestore_cf_api", "reactor_api"])
def test_peer_api_prompts_run_as_apps_post_them(comfyui, shared_dir, name):
    """Where ComfyUI has node replacement (0.19 on) /prompt moves facerestore_cf's and ReActor's nodes onto our
    twins; before it, ComfyUI refuses the unknown node types, and the migrated prompt runs."""
    from comfyui_gfpgan.nodes.peer_workflows import migrate_api_prompt

    prompt = _peer_prompt(name)
    if _has_node_replacement(comfyui):
        replaced = _request(f"{comfyui['url']}/node_replacements")
        assert {"FaceRestoreCFWithModel", "FaceRestoreModelLoader", "ReActorRestoreFace"} <= set(replaced)
        _assert_face_restored(comfyui, shared_dir, _run(comfyui, prompt))
    else:
        request = urllib.request.Request(f"{comfyui['url']}/prompt", data=json.dumps({"prompt": prompt}).encode(),
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(request, timeout=30)
    _assert_face_restored(comfyui, shared_dir, _run(comfyui, migrate_api_prompt(prompt).workflow))


def test_codeformer_weight_drives_codeformer_only_through_the_twins(comfyui, shared_dir):
    """facerestore_cf's node: a GFP-GAN file gives the same face at codeformer_fidelity 0.5 and 1.0, a CodeFormer
    file different faces."""
    import cv2

    from comfyui_gfpgan.nodes.peer_workflows import migrate_api_prompt

    def restored(model: str, fidelity: float) -> np.ndarray:
        prompt = migrate_api_prompt(_peer_prompt("facerestore_cf_api")).workflow
        prompt["2"]["inputs"]["model_name"] = model
        prompt["3"]["inputs"]["codeformer_fidelity"] = fidelity
        prompt["4"]["inputs"]["filename_prefix"] = f"peers/{model}-{fidelity}"
        return cv2.imread(str(_saved_images(comfyui, _run(comfyui, prompt))[0])).astype(int)

    gfpgan = [restored("GFPGANv1.4-seeded.pth", w) for w in (0.5, 1.0)]
    codeformer = [restored("codeformer-v0.1.0.pth", w) for w in (0.5, 1.0)]
    assert np.array_equal(gfpgan[0], gfpgan[1])
    assert np.abs(codeformer[0] - codeformer[1]).max(axis=2)[130:300, 200:330].mean() > 4


@pytest.mark.parametrize("name", ["facerestore_cf_ui", "reactor_ui"])
def test_peer_ui_workflows_load_and_run_in_the_frontend(comfyui, name):
    """A workflow saved by facerestore_cf or ReActor, opened in the real frontend without that pack: before
    ComfyUI's node replacement (0.3.64, 0.8.0) web/peer_workflows.js opens it on our twins, no node missing, and
    says so once; with it (0.19 on) our extension stays out, the missing-nodes dialog offers the swap and its
    "Replace Selected" button does it. Either way links, widget values and titles stay and Queue runs it."""
    node_path = os.environ.get("NODE_PATH", "")
    if not shutil.which("node") or not Path("/usr/bin/chromium").exists() or not any(
            (Path(p) / "playwright-core").is_dir() for p in node_path.split(os.pathsep) if p):
        pytest.skip("needs node, /usr/bin/chromium and playwright-core on NODE_PATH")
    twins = {"FaceRestoreModelLoader": "GFPGANPeerFaceRestoreModelLoader",
             "FaceRestoreCFWithModel": "GFPGANPeerFaceRestoreCFWithModel",
             "ReActorRestoreFace": "GFPGANPeerReActorRestoreFace"}
    script = TESTS / "browser" / "peer_workflows.mjs"
    run = subprocess.run(["node", str(script), comfyui["url"], str(PEER_WORKFLOWS / f"{name}.json"),
                          "example.png=portrait.png", "GFPGANv1.4.pth=GFPGANv1.4-seeded.pth",
                          f"ComfyUI=peer_ui/{name}"],  # its own file name: not a cached SaveImage of another test
                         capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    saved = report["saved"]
    peer_types = {node["type"] for node in saved.values() if node["type"] in twins}
    assert peer_types
    said = [line for line in report["console"] if "[GFPGAN]" in line]
    if report["server_node_replacements"]:  # ComfyUI's own quick fix; our extension leaves the workflow to it
        assert set(report["server_node_replacements"]) == peer_types
        assert report["loaded"]["dialog"]["shown"] and set(report["loaded"]["dialog"]["named"]) == peer_types
        assert report["quick_fix"]["offered"] and report["quick_fix"]["button"] == f"Replace Selected ({len(peer_types)})"
        assert not report["quick_fix"]["dialog_after"]["shown"]
        assert said == []
    else:  # our extension: nothing missing, nothing asked, one line naming what moved
        assert report["loaded"]["missing"] == [] and report["loaded"]["missing_reported"] == []
        assert not report["loaded"]["dialog"]["shown"] and not report["quick_fix"]["offered"]
        assert len(said) == 1 and all(f"{peer} → {twins[peer]}" in said[0] for peer in peer_types)
    after = report["after"]
    assert after["missing"] == [] and after["broken_links"] == []
    assert after["types"] == {key: twins.get(node["type"], node["type"]) for key, node in saved.items()}
    assert after["links"] == len(json.loads((PEER_WORKFLOWS / f"{name}.json").read_text(encoding="utf-8"))["links"])
    for key, node in saved.items():
        if node["type"] in twins:
            assert after["nodes"][key] == {"title": node["title"], "widgets_values": node["widgets_values"]}
    assert report["errors"] == [] and all("peer_workflows" not in error for error in report["startup"])
    assert report["run"]["status"] == "success", report["run"]
    assert len(report["run"]["images"]) == 1 and report["run"]["images"][0].startswith(f"peer_ui/{name}")
    assert (comfyui["outputs"] / report["run"]["images"][0]).is_file()


def test_yolov5face_detector_file_drives_the_restore(comfyui, yolov5n_face_file, official_weight_files):
    """A YOLOv5-face file (seeded, official layout) in `facedetection`, picked in the detector loader: the
    faces it finds in-process are the ones restored, and only there does the image change."""
    import cv2

    from comfyui_gfpgan.face_pipeline import DetectSettings, find_faces
    from comfyui_gfpgan.face_pipeline.detect import load_detector
    from yolov5face_reference import signal_images

    shutil.copy(yolov5n_face_file, comfyui["models"] / "facexlib" / "yolov5n-face.pth")
    frame = (signal_images()[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    cv2.imwrite(str(comfyui["outputs"].parent / "input" / "signal.png"), frame[:, :, ::-1])
    workflow = _load("gfpgan_restore_simple")
    workflow["1"]["inputs"]["image"] = "signal.png"
    workflow["3"]["inputs"]["detector_name"] = "yolov5n-face.pth"
    workflow["4"]["inputs"].update(threshold=0.9, selection="top_k", top_k=2, min_eye_distance=0)
    result = cv2.imread(str(_saved_images(comfyui, _run(comfyui, workflow))[0]))[:, :, ::-1].astype(int)
    image = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255
    faces = find_faces(image, load_detector(yolov5n_face_file),
                       DetectSettings(threshold=0.9, selection="top_k", top_k=2, min_eye_distance=0))[0]
    assert len(faces.faces) == 2
    changed = np.abs(result - frame.astype(int)).max(axis=2) > 8
    inside = np.zeros_like(changed)
    for face in faces.faces:  # the aligned crop covers about twice the box around its centre
        x1, y1, x2, y2 = face.box
        cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1)
        inside[max(0, int(cy - 1.5 * half)):int(cy + 1.5 * half), max(0, int(cx - 1.5 * half)):int(cx + 1.5 * half)] = True
    assert changed.any() and not (changed & ~inside).any()
