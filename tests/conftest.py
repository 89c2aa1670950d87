"""Session-wide fixtures: shared real assets and seeded GFP-GAN weights, made once.

Real assets (trained RetinaFace weights, photos) live beside the checkout in
``../shared`` (override with ``GFPGAN_TEST_ASSETS``); tests that need them skip
with a reason when they are absent.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from factories import seeded_clean_network
from paths import REPO_ROOT, TESTS

@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = Path(os.environ.get("GFPGAN_TEST_ASSETS", REPO_ROOT.parent / "shared"))
    if not (path / "README.md").is_file():
        pytest.skip(f"real test assets not found at {path} (set GFPGAN_TEST_ASSETS)")
    return path


@pytest.fixture(scope="session")
def retinaface_weights(shared_dir: Path) -> Path:
    path = shared_dir / "weights" / "retinaface_mobilenet0.25.safetensors"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return path


@pytest.fixture(scope="session")
def yolov5n_face_file(tmp_path_factory) -> Path:
    """A seeded YOLOv5-face n as CodeFormer's ``yolov5n-face.pth`` (official layout; no trained weights are at
    hand): on real photos it finds hundreds of "faces" at any threshold, so tests pick a few or use small images."""
    from yolov5face_reference import seeded_yolov5face_file, upstream

    reference = upstream()
    if reference is None:
        pytest.skip("upstream's YOLOv5-face code not installed (pip install codeformer==0.0.11, a test dependency)")
    return seeded_yolov5face_file(reference, "n", tmp_path_factory.mktemp("yolov5face") / "yolov5n-face.pth")


def _read_rgb(path: Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, f"cannot read {path}"
    return np.ascontiguousarray(bgr[:, :, ::-1])


@pytest.fixture(scope="session")
def astronaut_rgb(shared_dir: Path) -> np.ndarray:
    """512x512 photo with one face, HxWx3 uint8 RGB."""
    return _read_rgb(shared_dir / "images" / "astronaut.png")


@pytest.fixture(scope="session")
def grace_hopper_rgb(shared_dir: Path) -> np.ndarray:
    """600x512 photo with one face, HxWx3 uint8 RGB."""
    return _read_rgb(shared_dir / "images" / "grace_hopper.jpg")


@pytest.fixture(scope="session")
def small_state_dict():
    """A small seeded GFPGANv1Clean's state dict (64 px), for the file-format tests."""
    small = dict(out_size=64, num_style_feat=32, channel_multiplier=1, num_mlp=2, narrow=0.25)
    return {k: v.contiguous() for k, v in seeded_clean_network(seed=9, **small).state_dict().items()}


@pytest.fixture(scope="session")
def small_model(small_state_dict, tmp_path_factory) -> str:
    """``small_state_dict`` as a .safetensors file: a model that loads in moments and restores a face in
    milliseconds, for the job tests (folders, videos, Ray workers)."""
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("small_model") / "gfpgan-64-seeded.safetensors"
    save_file(small_state_dict, str(path))
    return str(path)


@pytest.fixture(scope="session")
def official_clean_network():
    """Seeded GFPGANv1Clean at the official v1.3/v1.4 config (built once per session)."""
    return seeded_clean_network(seed=0)


@pytest.fixture(scope="session")
def official_weight_files(official_clean_network, tmp_path_factory) -> dict[str, Path]:
    """The seeded official-config network saved as the official .pth layout and as .safetensors."""
    from safetensors.torch import save_file

    state_dict = {k: v.detach().clone().contiguous() for k, v in official_clean_network.state_dict().items()}
    folder = tmp_path_factory.mktemp("gfpgan_weights")
    pth = folder / "GFPGANv1.4-seeded.pth"
    torch.save({"params_ema": state_dict}, pth)
    safetensors = folder / "GFPGANv1.4-seeded.safetensors"
    save_file(state_dict, str(safetensors))
    return {"pth": pth, "safetensors": safetensors}


@pytest.fixture(scope="session")
def official_reference_network(official_clean_network):
    """spandrel's independent GFPGANv1Clean with the same seeded weights (the upstream code, test-only)."""
    module = pytest.importorskip("spandrel.architectures.GFPGAN.__arch.gfpganv1_clean_arch")
    config = dict(out_size=512, num_style_feat=512, channel_multiplier=2, num_mlp=8, input_is_latent=True,
                  different_w=True, narrow=1, sft_half=True)
    reference = module.GFPGANv1Clean(**config, decoder_load_path=None, fix_decoder=False).eval()
    reference.load_state_dict(official_clean_network.state_dict(), strict=True)
    return reference


@pytest.fixture(scope="session")
def comfy_nodes(tmp_path_factory, official_weight_files, retinaface_weights):
    """The pack's node module, importable without ComfyUI (tests/comfy_stub stands in when it is absent)."""
    models_dir = tmp_path_factory.mktemp("comfy_models")
    (models_dir / "facerestore_models").mkdir()
    (models_dir / "facedetection").mkdir()
    shutil.copy(official_weight_files["safetensors"], models_dir / "facerestore_models" / "GFPGANv1.4-seeded.safetensors")
    shutil.copy(retinaface_weights, models_dir / "facedetection" / "retinaface_mobilenet0.25.safetensors")
    os.environ["GFPGAN_TEST_MODELS_DIR"] = str(models_dir)
    if importlib.util.find_spec("comfy_api") is None:
        sys.path.insert(0, str(TESTS / "comfy_stub"))
    elif not torch.cuda.is_available():  # the real ComfyUI (on PYTHONPATH) assumes CUDA unless told --cpu
        from comfy.cli_args import args

        args.cpu = True
    import folder_paths

    folder_paths.models_dir = str(models_dir)  # the nodes register their folders under it on import
    folder_paths.set_temp_directory(str(tmp_path_factory.mktemp("comfy_temp")))  # where node previews go
    import comfyui_gfpgan.nodes.extension as module

    return module


# Face boxes of the shared photos as shared/README.md lists them (facexlib's detection at full size).
ASTRONAUT_FACE = (177.9, 56.8, 273.1, 177.2)
GRACE_HOPPER_FACE = (177.7, 106.5, 353.9, 327.7)
SMALL_FACE_WIDTHS = (70, 80, 90, 100)  # px: small in a big frame, yet worth restoring (eyes ~30-45 px apart)


@pytest.fixture(scope="session")
def small_face_frames(astronaut_rgb, grace_hopper_rgb) -> dict:
    """Big frames with small faces (70-100 px wide): ``name -> (HxWx3 uint8 RGB, expected face boxes)``.

    A 2048x2048 frame with four faces and a 3840x2160 one with eight, the frames that GFPGANer's full-size
    detection finds every face in and a 640 px working size does not.
    """
    from factories import tile_photos

    photos = [(astronaut_rgb, ASTRONAUT_FACE), (grace_hopper_rgb, GRACE_HOPPER_FACE)]
    return {
        "2048x2048": tile_photos(photos, 2048, 2048, 4, SMALL_FACE_WIDTHS),
        "3840x2160": tile_photos(photos, 2160, 3840, 8, SMALL_FACE_WIDTHS * 2),
    }
