"""Architecture and config detection from state-dict keys and shapes alone."""

import itertools

import pytest
import torch

from comfyui_gfpgan.gfpgan_arch import ModelLoadError, detect_architecture

from factories import OFFICIAL_CLEAN_CONFIG, seeded_clean_network

GRID = [
    dict(out_size=out_size, narrow=narrow, channel_multiplier=multiplier, sft_half=sft_half, different_w=different_w,
         num_mlp=num_mlp, num_style_feat=style)
    for (out_size, narrow, multiplier, sft_half, different_w, num_mlp, style) in [
        (64, 0.25, 1, True, True, 2, 64),
        (64, 0.5, 2, False, True, 3, 32),
        (128, 0.25, 2, True, False, 1, 64),
        (128, 0.125, 1, False, False, 4, 16),
        (256, 0.125, 2, True, True, 2, 32),
        (32, 0.25, 2, False, True, 2, 16),  # below 64 px the multiplier changes no shape
    ]
]


@pytest.mark.parametrize("config", GRID, ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_recovers_clean_config(config):
    state_dict = seeded_clean_network(seed=0, nonzero_noise=False, **config).state_dict()
    spec = detect_architecture(state_dict)
    assert spec.name == "GFPGANv1Clean"
    expected = {**OFFICIAL_CLEAN_CONFIG, **config}
    if config["out_size"] < 64:
        expected["channel_multiplier"] = spec.config["channel_multiplier"]
    assert spec.config == expected


def test_recovers_official_config(official_clean_network):
    spec = detect_architecture(official_clean_network.state_dict())
    assert spec == type(spec)("GFPGANv1Clean", OFFICIAL_CLEAN_CONFIG)


def test_damaged_gfpgan_state_dict_gets_a_clear_error():
    state_dict = seeded_clean_network(seed=0, nonzero_noise=False, out_size=64, narrow=0.25, num_style_feat=16).state_dict()
    del state_dict["final_linear.weight"]
    with pytest.raises(ModelLoadError, match="missing or odd"):
        detect_architecture(state_dict, source="broken.pth")


def original_v1_state_dict(**config):
    module = pytest.importorskip("spandrel.architectures.GFPGAN.__arch.gfpganv1_arch")
    torch.manual_seed(0)
    return module.GFPGANv1(decoder_load_path=None, fix_decoder=False, **config).state_dict()


@pytest.mark.parametrize("config", [
    dict(out_size=64, num_style_feat=64, channel_multiplier=1, num_mlp=2, input_is_latent=True, different_w=True,
         narrow=0.5, sft_half=True),
    dict(out_size=128, num_style_feat=32, channel_multiplier=2, num_mlp=3, input_is_latent=True, different_w=False,
         narrow=0.25, sft_half=False),
])
def test_recognises_the_original_v1_layout(config):
    spec = detect_architecture(original_v1_state_dict(**config))
    assert spec.name == "GFPGANv1" and spec.config == config
