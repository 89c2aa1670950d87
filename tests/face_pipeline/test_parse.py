"""Face-parsing masks with ParseNet and BiSeNet (seeded random weights: no real parsing weights offline)."""

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from comfyui_gfpgan.face_pipeline.detect import FaceModelError
from comfyui_gfpgan.face_pipeline.errors import FaceInputError
from comfyui_gfpgan.face_pipeline.parse import FACE_CLASSES, load_parser, parse_face_masks

# Written out here, not taken from the implementation: facexlib's MASK_COLORMAP (ParseNet's label
# order, face_restoration_helper.paste_faces_to_input_image), and each network's labels by name
# (ParseNet: facexlib's; BiSeNet: face-parsing.PyTorch's CelebAMask-HQ order, 0 = background).
FACEXLIB_MASK_COLORMAP = [0, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0, 255, 0, 0, 0]
LABELS = {
    "parsenet": ["background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
                 "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth"],
    "bisenet": ["background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
                "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat"],
}
FACE_PARTS = {name for name, color in zip(LABELS["parsenet"], FACEXLIB_MASK_COLORMAP) if color}
EXPECTED_FACE_CLASSES = {kind: [float(name in FACE_PARTS) for name in names] for kind, names in LABELS.items()}


def test_face_classes_are_facexlibs_in_each_networks_label_order():
    for kind in ("parsenet", "bisenet"):
        assert list(FACE_CLASSES[kind]) == EXPECTED_FACE_CLASSES[kind], kind


def facexlib_recipe(logits: torch.Tensor, kind: str) -> np.ndarray:
    """facexlib's paste_faces_to_input_image mask, with OpenCV: class map -> two 101 px sigma-11 blurs -> cleared edges."""
    classes = logits.argmax(dim=1)[0].numpy()
    mask = np.array(EXPECTED_FACE_CLASSES[kind], dtype=np.float64)[classes] * 255
    mask = cv2.GaussianBlur(cv2.GaussianBlur(mask, (101, 101), 11), (101, 101), 11)
    mask[:10], mask[-10:], mask[:, :10], mask[:, -10:] = 0, 0, 0, 0
    return mask / 255


@pytest.fixture(scope="module")
def parsenet(tmp_path_factory):
    from facexlib.parsing.parsenet import ParseNet

    torch.manual_seed(0)
    network = ParseNet(in_size=512, out_size=512, parsing_ch=19)
    path = tmp_path_factory.mktemp("parser") / "parsing_parsenet.safetensors"
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(path))
    return load_parser(path)


@pytest.fixture(scope="module")
def bisenet(tmp_path_factory):
    from facexlib.parsing.bisenet import BiSeNet

    torch.manual_seed(1)
    network = BiSeNet(num_class=19).eval()
    path = tmp_path_factory.mktemp("parser") / "parsing_bisenet.pth"
    torch.save({f"module.{k}": v for k, v in network.state_dict().items()}, path)  # DataParallel-style keys
    return load_parser(path)


def crops_with_structure(count: int = 1, size: int = 512) -> torch.Tensor:
    """Smooth random images, so random networks give large class regions rather than pixel noise."""
    coarse = torch.rand(count, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


@pytest.mark.slow
def test_parsenet_masks_follow_facexlib(parsenet):
    assert parsenet.kind == "parsenet"
    crops = crops_with_structure()
    masks = parse_face_masks(parsenet, crops)
    assert masks.shape == (1, 512, 512) and masks.min() >= 0 and masks.max() <= 1
    with torch.inference_mode():
        reference = facexlib_recipe(parsenet.network(crops * 2 - 1)[0], "parsenet")
    assert 0.01 < reference.mean() < 0.99, "test image should give a mix of face and non-face classes"
    assert np.abs(masks[0].numpy() - reference).max() < 1e-3


def test_bisenet_masks_follow_facexlib(bisenet):
    assert bisenet.kind == "bisenet"
    crops = crops_with_structure(2)
    masks = parse_face_masks(bisenet, crops, chunk_size=1)
    # BiSeNet's ImageNet normalisation, as facexlib's parsing demo feeds it (written out, not the implementation's)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    for index in range(2):
        with torch.inference_mode():
            logits = bisenet.network((crops[index : index + 1] - mean) / std)[0]
        reference = facexlib_recipe(logits, "bisenet")
        assert np.abs(masks[index].numpy() - reference).max() < 1e-3


def test_other_crop_sizes_are_parsed_at_512(bisenet):
    masks = parse_face_masks(bisenet, crops_with_structure(1, 256))
    assert masks.shape == (1, 256, 256)
    full = parse_face_masks(bisenet, torch.nn.functional.interpolate(crops_with_structure(1, 256), size=(512, 512),
                                                                     mode="bilinear", align_corners=False))
    assert torch.allclose(masks, torch.nn.functional.interpolate(full[None], size=(256, 256), mode="bilinear",
                                                                 align_corners=False)[0], atol=1e-5)
    assert parse_face_masks(bisenet, torch.zeros(0, 3, 512, 512)).shape == (0, 512, 512)


def test_a_detector_given_as_parser_is_named_in_a_few_keys(retinaface_weights):
    with pytest.raises(FaceModelError, match=r"not face-parsing weights .*: \d+ missing tensors \(.* and \d+ more\); "
                       r"300 unexpected tensors \(.* and 295 more\)$") as error:
        load_parser(retinaface_weights)
    assert len(str(error.value)) < 1000  # the whole key list was 18 KB


def test_wrong_inputs_are_refused(tmp_path, bisenet):
    path = tmp_path / "not_parsenet.safetensors"
    save_file({"encoder.0.conv2d.weight": torch.zeros(1)}, str(path))
    with pytest.raises(FaceModelError, match="parsing_parsenet"):
        load_parser(path)
    with pytest.raises(FaceInputError, match=r"\[N,3,S,S\]"):
        parse_face_masks(bisenet, torch.rand(1, 4, 64, 64))
