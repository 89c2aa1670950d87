"""Face-parsing masks with ParseNet (seeded random weights: no real parsing weights offline)."""

import pytest
import torch
from safetensors.torch import save_file

from comfyui_gfpgan.face_pipeline.detect import FaceModelError
from comfyui_gfpgan.face_pipeline.parse import FACE_CLASSES, load_parser, parse_face_masks


@pytest.fixture(scope="module")
def parser(tmp_path_factory):
    from facexlib.parsing.parsenet import ParseNet

    torch.manual_seed(0)
    network = ParseNet(in_size=512, out_size=512, parsing_ch=19)
    path = tmp_path_factory.mktemp("parser") / "parsing_parsenet.safetensors"
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(path))
    return load_parser(path)


@pytest.mark.slow
def test_masks_follow_the_class_map_and_are_soft(parser):
    crops = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(1))
    masks = parse_face_masks(parser, crops)
    assert masks.shape == (1, 512, 512) and masks.min() >= 0 and masks.max() <= 1
    assert masks[:, :10].max() == 0 and masks[:, :, -10:].max() == 0  # edges cleared, as facexlib does
    # facexlib's own recipe, with OpenCV: class map -> two 101 px sigma-11 blurs -> cleared edges
    import cv2
    import numpy as np

    with torch.inference_mode():
        classes = parser.network(crops * 2 - 1)[0].argmax(dim=1)[0].numpy()
    reference = np.array(FACE_CLASSES, dtype=np.float32)[classes] * 255
    reference = cv2.GaussianBlur(cv2.GaussianBlur(reference, (101, 101), 11), (101, 101), 11) / 255
    centre = (slice(70, 442), slice(70, 442))  # away from where border handling differs
    assert np.abs(masks[0].numpy()[centre] - reference[centre]).max() < 0.02
    inner = masks[:, 10:-10, 10:-10]
    steps = (inner[:, 1:] - inner[:, :-1]).abs().max()
    assert steps < 0.05  # heavily blurred inside the cleared edge (paste multiplies in the feathered mask)


def test_wrong_file_is_refused(tmp_path):
    path = tmp_path / "not_parsenet.safetensors"
    save_file({"encoder.0.conv2d.weight": torch.zeros(1)}, str(path))
    with pytest.raises(FaceModelError, match="ParseNet"):
        load_parser(path)
