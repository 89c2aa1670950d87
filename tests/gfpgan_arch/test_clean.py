"""GFPGANv1Clean against an independent reference (spandrel) and its inference semantics."""

import pytest
import torch

from comfyui_gfpgan.gfpgan_arch.clean import GFPGANv1Clean

from factories import OFFICIAL_CLEAN_CONFIG, seeded_clean_network

SMALL = dict(out_size=64, num_style_feat=64, channel_multiplier=1, num_mlp=2, narrow=0.25)


def reference_class():
    module = pytest.importorskip("spandrel.architectures.GFPGAN.__arch.gfpganv1_clean_arch")
    return module.GFPGANv1Clean


def reference_output(reference, x):
    return reference(x, return_rgb=False, randomize_noise=False)[0]


def test_official_config_keys_and_shapes_match_reference(official_clean_network, official_reference_network):
    ours = {k: tuple(v.shape) for k, v in official_clean_network.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in official_reference_network.state_dict().items()}
    assert ours == theirs


@pytest.mark.slow
def test_official_config_matches_reference_fp32(official_clean_network, official_reference_network):
    x = torch.rand(2, 3, 512, 512, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.inference_mode():
        ours = official_clean_network(x, fidelity=1.0)
        theirs = reference_output(official_reference_network, x)
    max_diff = (ours - theirs).abs().max().item()
    print(f"official config vs spandrel: max abs diff {max_diff:.2e}")
    assert ours.shape == (2, 3, 512, 512)
    assert max_diff <= 1e-4


@pytest.mark.parametrize("sft_half,different_w", [(True, True), (False, False), (True, False)])
def test_small_configs_match_reference(sft_half, different_w):
    config = {**SMALL, "sft_half": sft_half, "different_w": different_w, "input_is_latent": True}
    ours = seeded_clean_network(seed=5, **config)
    reference = reference_class()(**config, decoder_load_path=None, fix_decoder=False).eval()
    reference.load_state_dict(ours.state_dict(), strict=True)
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        batched = ours(x)
        assert torch.allclose(batched, reference_output(reference, x), atol=1e-5)
        # a single sample takes the weight-modulation path: same result
        assert torch.allclose(ours(x[1:2]), batched[1:2], atol=1e-5)


@pytest.mark.parametrize("batch", [2, 1])
def test_gradients_match_reference(batch):
    """The in-place updates that speed up inference must not corrupt autograd (e.g. fine-tuning)."""
    config = {**SMALL, "sft_half": True, "different_w": True, "input_is_latent": True}
    ours = seeded_clean_network(seed=6, **config).double().train()
    reference = reference_class()(**config, decoder_load_path=None, fix_decoder=False).double().train()
    reference.load_state_dict(ours.state_dict(), strict=True)
    x = torch.rand(batch, 3, 64, 64, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2 - 1
    ours(x).square().mean().backward()
    reference_output(reference, x).square().mean().backward()
    our_params = dict(ours.named_parameters())
    compared = 0
    for name, param in reference.named_parameters():
        if param.grad is not None:
            assert torch.allclose(our_params[name].grad, param.grad, rtol=1e-9, atol=1e-12), name
            compared += 1
    assert compared == sum(p.grad is not None for p in ours.parameters()) > 100


def test_fidelity_weight_scales_the_sft_modulation():
    network = seeded_clean_network(seed=1, **SMALL)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.inference_mode():
        full, default, half, none = network(x, fidelity=1.0), network(x), network(x, fidelity=0.5), network(x, fidelity=0.0)
    assert torch.equal(full, default)
    assert not torch.allclose(full, half, atol=1e-4) and not torch.allclose(half, none, atol=1e-4)
    # w = 0 removes every spatial condition: the output no longer depends on the encoder's SFT branches.
    with torch.no_grad():
        for branch in list(network.condition_scale) + list(network.condition_shift):
            branch[2].weight.mul_(3.0)
    with torch.inference_mode():
        assert torch.allclose(network(x, fidelity=0.0), none, atol=1e-6)
        assert not torch.allclose(network(x, fidelity=1.0), full, atol=1e-4)


def test_fixed_noise_is_deterministic_and_seeded_noise_reproducible():
    network = seeded_clean_network(seed=2, nonzero_noise=True, **SMALL)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    rng_state = torch.get_rng_state()
    with torch.inference_mode():
        fixed_a, fixed_b = network(x), network(x)
        seeded_a = network(x, noise=torch.Generator().manual_seed(7))
        seeded_b = network(x, noise=torch.Generator().manual_seed(7))
        seeded_c = network(x, noise=torch.Generator().manual_seed(8))
    assert torch.equal(torch.get_rng_state(), rng_state), "inference must not touch the global RNG"
    assert torch.equal(fixed_a, fixed_b)
    assert torch.equal(seeded_a, seeded_b)
    assert not torch.allclose(seeded_a, seeded_c, atol=1e-4)
    assert not torch.allclose(seeded_a, fixed_a, atol=1e-4)


def test_bfloat16_runs_and_stays_close_to_fp32():
    network = seeded_clean_network(seed=3, **SMALL)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4)) * 2 - 1
    with torch.inference_mode():
        fp32 = network(x)
        bf16 = network.to(torch.bfloat16)(x.to(torch.bfloat16)).float()
    mse = (fp32.clamp(-1, 1) - bf16.clamp(-1, 1)).div(2).pow(2).mean()
    psnr = 10 * torch.log10(1 / mse)
    print(f"bf16 vs fp32 PSNR: {psnr:.1f} dB")
    assert psnr > 47  # (measured 50.2 dB)


def test_channels_last_input_gives_the_same_result():
    network = seeded_clean_network(seed=4, **SMALL)
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(5)) * 2 - 1
    with torch.inference_mode():
        expected = network(x)
        got = network(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(got, expected, atol=1e-5)
    assert got.is_contiguous(memory_format=torch.channels_last)  # the layout carries through every layer
