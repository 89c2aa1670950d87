"""The original GFPGANv1 in pure PyTorch against the upstream code (spandrel's copy).

The upstream network needs a compiled fused-activation op; here it gets the textbook formula
instead, and its own native upfirdn2d, so it is an independent reference on the CPU.
"""

import pytest
import torch
import torch.nn.functional as F

from comfyui_gfpgan.face_restorers import load_face_restorer
from comfyui_gfpgan.gfpgan_arch import detect_architecture
from comfyui_gfpgan.gfpgan_arch.original import GFPGANv1

CONFIGS = [
    dict(out_size=64, num_style_feat=64, channel_multiplier=1, num_mlp=2, input_is_latent=True, different_w=True,
         narrow=0.5, sft_half=True),
    dict(out_size=128, num_style_feat=32, channel_multiplier=2, num_mlp=3, input_is_latent=True, different_w=False,
         narrow=0.25, sft_half=False),
]


def textbook_fused_leaky_relu(x, bias, negative_slope=0.2, scale=2**0.5):
    return F.leaky_relu(x + bias.view(1, -1, *[1] * (x.ndim - 2)), negative_slope) * scale


@pytest.fixture
def reference_module(monkeypatch):
    fused_act = pytest.importorskip("spandrel.architectures.GFPGAN.__arch.fused_act")
    stylegan2 = pytest.importorskip("spandrel.architectures.GFPGAN.__arch.stylegan2_arch")
    module = pytest.importorskip("spandrel.architectures.GFPGAN.__arch.gfpganv1_arch")
    monkeypatch.setattr(fused_act, "fused_leaky_relu", textbook_fused_leaky_relu)
    monkeypatch.setattr(stylegan2, "fused_leaky_relu", textbook_fused_leaky_relu)
    return module


@pytest.mark.parametrize("config", CONFIGS, ids=["64-sft_half", "128-full_sft"])
def test_matches_upstream_on_cpu(reference_module, config):
    torch.manual_seed(0)
    reference = reference_module.GFPGANv1(decoder_load_path=None, fix_decoder=False, **config).eval()
    with torch.no_grad():  # non-zero noise strengths and biases, as in real checkpoints
        for name, param in reference.named_parameters():
            if name.endswith(".weight") and param.numel() == 1 or name.endswith("activate.bias"):
                param.copy_(torch.rand(param.shape) * 0.1)
    ours = GFPGANv1(**config).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    size = config["out_size"]
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.inference_mode():
        expected = reference(x, return_rgb=False, randomize_noise=False)[0]
        got = ours(x)
        single = ours(x[1:2])  # a batch of one modulates the weight instead of the activations
        half = ours(x, fidelity=0.5)
    print(f"GFPGANv1 {size}px vs upstream: max abs diff {(got - expected).abs().max():.2e}")
    assert got.shape == expected.shape and (got - expected).abs().max() < 1e-4
    assert (single - expected[1:2]).abs().max() < 1e-4
    assert not torch.allclose(half, got, atol=1e-4)
    assert torch.equal(ours(x, noise=torch.Generator().manual_seed(3)), ours(x, noise=torch.Generator().manual_seed(3)))


def test_v1_file_loads_through_the_normal_path(tmp_path, reference_module):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    reference = reference_module.GFPGANv1(decoder_load_path=None, fix_decoder=False, **CONFIGS[0])
    state_dict = {k: v.contiguous() for k, v in reference.state_dict().items()}
    path = tmp_path / "GFPGANv1.pth"
    torch.save({"params_ema": state_dict}, path)
    loaded = load_face_restorer(path)
    assert loaded.arch == "GFPGANv1" and loaded.config == CONFIGS[0]
    assert detect_architecture(state_dict).name == "GFPGANv1"
    save_file(state_dict, str(tmp_path / "v1.safetensors"))
    with torch.inference_mode():
        out = load_face_restorer(tmp_path / "v1.safetensors").network(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 3, 64, 64) and torch.isfinite(out).all()
