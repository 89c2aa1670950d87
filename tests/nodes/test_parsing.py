"""The face-parser loader and the 'parsing' mask through the nodes (seeded ParseNet: no real parsing weights offline)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from node_info import node_inputs


@pytest.fixture(scope="module")
def parser(comfy_nodes):
    """Seeded ParseNet weights in models/facexlib (the second folder of the facedetection key), loaded by the node."""
    from facexlib.parsing.parsenet import ParseNet

    torch.manual_seed(0)
    network = ParseNet(in_size=512, out_size=512, parsing_ch=19)
    folder = Path(os.environ["GFPGAN_TEST_MODELS_DIR"]) / "facexlib"
    folder.mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, folder / "parsing_parsenet-seeded.safetensors")
    assert "parsing_parsenet-seeded.safetensors" in node_inputs(comfy_nodes.LoadFaceParser)[0][2]["options"]
    return comfy_nodes.LoadFaceParser.execute("parsing_parsenet-seeded.safetensors").result[0]


@pytest.fixture(scope="module")
def detected(comfy_nodes, astronaut_rgb):
    detector = comfy_nodes.LoadFaceDetector.execute("retinaface_mobilenet0.25.safetensors").result[0]
    image = torch.from_numpy(astronaut_rgb)[None].float() / 255
    faces, crops, _ = comfy_nodes.DetectFaces.execute(image, detector, 0.97, "all", 1, 0, 0, 640).result
    return detector, image, faces, crops


def test_parsing_mask_stays_inside_the_feathered_one(comfy_nodes, parser, detected):
    _, image, faces, crops = detected
    assert parser.info.network is parser.patcher.model
    feathered_image, feathered = comfy_nodes.PasteFaces.execute(image, faces, crops, 1.0, "feathered", 1.0, False).result
    parsed_image, parsed = comfy_nodes.PasteFaces.execute(
        image, faces, crops, 1.0, "parsing", 1.0, False, face_parser=parser
    ).result
    assert parsed.shape == feathered.shape == (1, 512, 512)
    # <= up to the bicubic warp's small overshoot (its weights are not all positive)
    assert (parsed <= feathered + 0.01).all() and not torch.allclose(parsed, feathered, atol=1e-2)
    assert parsed_image.shape == image.shape


def test_missing_parser_names_the_folder(comfy_nodes):
    with pytest.raises(FileNotFoundError, match="facexlib"):
        comfy_nodes.LoadFaceParser.execute("parsing_parsenet.pth")


@pytest.mark.slow
def test_all_in_one_with_a_parser(comfy_nodes, parser, detected):
    detector, image, faces, crops = detected
    model = comfy_nodes.LoadGFPGANModel.execute("GFPGANv1.4-seeded.safetensors", "fp32").result[0]
    _, feathered = comfy_nodes.PasteFaces.execute(image, faces, crops, 1.0, "feathered", 1.0, False).result
    with pytest.raises(ValueError, match="face parser"):
        comfy_nodes.GFPGANFaceRestore.execute(
            image, model, detector, 1.0, 1.0, "parsing", 1.0, False, 0.97, "all", 1, 0, 0, 640, "fixed", 0
        )
    out, mask = comfy_nodes.GFPGANFaceRestore.execute(
        image, model, detector, 1.0, 1.0, "parsing", 1.0, False, 0.97, "all", 1, 0, 0, 640, "fixed", 0,
        face_parser=parser,
    ).result
    assert out.shape == image.shape and 0 < mask.max() and (mask <= feathered + 0.01).all()
    assert torch.equal(out[mask == 0], image[mask == 0])  # outside the mask the photo is untouched
