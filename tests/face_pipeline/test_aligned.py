"""Restoring pre-aligned crops: they come back in the size, grayness and alpha they were given."""

import pytest
import torch

from comfyui_gfpgan.face_pipeline.aligned import restore_aligned_crops
from comfyui_gfpgan.face_pipeline.errors import FaceInputError

from factories import IdentityRestorer


class Brighten(IdentityRestorer):
    """Changes colour per channel, so a gray crop would turn colour if nothing made it gray again."""

    def forward(self, x, fidelity=1.0, noise=None):
        return x + torch.tensor([0.3, 0.0, -0.3], dtype=x.dtype).view(1, 3, 1, 1)


def smooth(channels: int, size: int, count: int = 2) -> torch.Tensor:
    coarse = torch.rand(count, channels, 6, 6, generator=torch.Generator().manual_seed(channels))
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def test_a_crop_of_the_network_size_passes_an_identity_restorer_unchanged():
    crops = smooth(3, 512)
    assert torch.allclose(restore_aligned_crops(IdentityRestorer(), crops), crops, atol=1e-6)


@pytest.mark.parametrize("size", [256, 700])
def test_other_sizes_are_restored_at_the_network_size_and_sized_back(size):
    crops = smooth(3, size)
    restored = restore_aligned_crops(IdentityRestorer(), crops)
    assert restored.shape == crops.shape and (restored - crops).abs().mean() < 0.01


def test_gray_stays_gray_and_alpha_is_kept():
    gray = smooth(1, 256)
    out = restore_aligned_crops(Brighten(), gray)
    assert out.shape == gray.shape  # one channel in, one out
    rgb_gray = torch.cat([gray[:1].expand(-1, 3, -1, -1), smooth(3, 256)[:1]])  # a gray RGB crop beside a colour one
    out = restore_aligned_crops(Brighten(), rgb_gray)
    assert torch.equal(out[0, 0], out[0, 1]) and torch.equal(out[0, 1], out[0, 2])
    assert (out[1, 0] - out[1, 2]).abs().mean() > 0.2  # the colour crop keeps its (changed) colour
    rgba = torch.cat([smooth(3, 300), torch.rand(2, 1, 300, 300)], dim=1)
    out = restore_aligned_crops(Brighten(), rgba)
    assert out.shape == rgba.shape and torch.equal(out[:, 3], rgba[:, 3])


def test_unusable_crops_are_a_clear_error():
    with pytest.raises(FaceInputError, match="channels"):
        restore_aligned_crops(IdentityRestorer(), torch.rand(1, 2, 64, 64))
