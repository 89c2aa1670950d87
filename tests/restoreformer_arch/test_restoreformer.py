"""RestoreFormer and RestoreFormer++: parity with the references, batching, bf16, key detection, loading files."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from comfyui_gfpgan.face_restorers import detect_family, load_face_restorer
from comfyui_gfpgan.model_files import ModelLoadError
from comfyui_gfpgan.restoreformer_arch import detect_architecture, network_keys
from comfyui_gfpgan.restoreformer_arch.testing import reference_views, seeded_faces, seeded_restoreformer
from paths import TESTS

REFERENCE = TESTS / "data" / "restoreformer_pp_reference.safetensors"
SMALL = dict(ch=32, ch_mult=(1, 2, 2, 4), n_embed=64, embed_dim=32, z_channels=64, resolution=128)
TINY = dict(ch=32, ch_mult=(1, 2, 4), num_res_blocks=1, n_embed=16, embed_dim=16, z_channels=32, resolution=64)
FAMILY = {False: "RestoreFormer", True: "RestoreFormer++"}


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of [-1, 1] images (peak-to-peak 2)."""
    return float(10 * torch.log10(4 / (a.float() - b.float()).pow(2).mean()))


def run(network, x, dtype=None):
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        return network(x).float()


@pytest.fixture(scope="module")
def official_restoreformer():
    return seeded_restoreformer(seed=0)


@pytest.fixture(scope="module")
def official_faces():
    return seeded_faces(2, 512, seed=1)


@pytest.fixture(scope="module")
def official_restoreformer_output(official_restoreformer, official_faces):
    return run(official_restoreformer, official_faces)


@pytest.fixture(scope="module", params=[False, True], ids=["RestoreFormer", "RestoreFormer++"])
def small(request):
    plus_plus = request.param
    return plus_plus, seeded_restoreformer(seed=3, plus_plus=plus_plus, **SMALL)


# --- parity -------------------------------------------------------------------------------------------------------

def spandrel_restoreformer(state_dict, **config):
    module = pytest.importorskip("spandrel.architectures.RestoreFormer")
    reference = module.RestoreFormer(**config).eval()  # spandrel's defaults: the official RestoreFormer.pth config
    reference.load_state_dict(state_dict, strict=True)
    return reference


def test_parity_with_spandrel_small():
    ours = seeded_restoreformer(seed=5, **SMALL)
    reference = spandrel_restoreformer(ours.state_dict(), **SMALL)
    x = seeded_faces(2, 128, seed=5)
    with torch.inference_mode():
        expected = reference(x)[0]
    assert (run(ours, x) - expected).abs().max() <= 1e-4


@pytest.mark.slow
def test_parity_with_spandrel_official(official_restoreformer, official_faces, official_restoreformer_output):
    reference = spandrel_restoreformer(official_restoreformer.state_dict())
    with torch.inference_mode():
        expected = reference(official_faces)[0]
    assert expected.std() > 0.05  # a real image, not a flat one
    assert (official_restoreformer_output - expected).abs().max() <= 1e-4


@pytest.mark.slow
def test_parity_with_upstream_restoreformer_pp_official():
    """Against upstream RestoreFormer++'s outputs on the same seeded weights and faces, stored in tests/data (the
    file's metadata and tests/data/README.md say how they were made); measured max difference 3.6e-6."""
    reference = load_file(str(REFERENCE))
    ours = seeded_restoreformer(seed=1, plus_plus=True)
    views = reference_views(run(ours, seeded_faces(2, 512, seed=1)))
    assert reference["windows"].std() > 0.05
    for name, expected in reference.items():
        assert (views[name] - expected).abs().max() <= 1e-4, name


# --- batching, dtypes -----------------------------------------------------------------------------------------------

def test_batched_equals_one_at_a_time(small):
    _, network = small
    x = seeded_faces(3, 128, seed=7)
    together = run(network, x)
    for index in range(3):
        assert (run(network, x[index : index + 1]) - together[index : index + 1]).abs().max() <= 1e-5


@pytest.mark.slow
def test_batched_equals_one_at_a_time_official(official_restoreformer, official_faces, official_restoreformer_output):
    alone = run(official_restoreformer, official_faces[1:])
    assert (alone - official_restoreformer_output[1:]).abs().max() <= 1e-5


def test_channels_last_input_gives_the_same(small):
    _, network = small
    x = seeded_faces(2, 128, seed=8)
    assert (run(network, x.contiguous(memory_format=torch.channels_last)) - run(network, x)).abs().max() <= 1e-5


# PSNR (dB) of bf16 against fp32 measured on this config (seed 3, faces seed 9): under autocast, and with bf16 weights;
# the lower of two CPUs' figures (one emulating bf16, 38.7 / 36.3 and 34.3 / 34.8; one with avx512_bf16, 35.4 / 36.0
# and 34.9 / 34.7: native bf16 kernels round differently).
BF16_PSNR = {False: (35.4, 36.0), True: (34.3, 34.7)}


def test_bf16_close_to_fp32(small):
    plus_plus, network = small
    x = seeded_faces(2, 128, seed=9)
    reference = run(network, x)
    autocast, weights = BF16_PSNR[plus_plus]
    assert psnr(run(network, x, torch.bfloat16), reference) >= autocast - 3
    weights_bf16 = seeded_restoreformer(seed=3, plus_plus=plus_plus, **SMALL).to(torch.bfloat16)
    with torch.inference_mode():
        out = weights_bf16(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16 and psnr(out, reference) >= weights - 3


# --- key detection -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("plus_plus", [False, True], ids=["RestoreFormer", "RestoreFormer++"])
@pytest.mark.parametrize("config", [SMALL, TINY, dict(TINY, num_res_blocks=3, ch_mult=(1, 1, 2, 2, 4), resolution=256)],
                         ids=["small", "tiny", "five-levels"])
def test_detection_round_trips(plus_plus, config):
    network = seeded_restoreformer(seed=0, plus_plus=plus_plus, **config)
    family, spec = detect_family(network.state_dict(), "x.pth")
    assert family.name == FAMILY[plus_plus] and spec.config == network.config
    assert spec.crop_size == config["resolution"]


@pytest.mark.slow
@pytest.mark.parametrize("plus_plus", [False, True], ids=["RestoreFormer", "RestoreFormer++"])
def test_detection_official_configs(plus_plus, official_restoreformer):
    network = official_restoreformer if not plus_plus else seeded_restoreformer(seed=2, plus_plus=True)
    family, spec = detect_family(network.state_dict(), "x.pth")
    assert family.name == FAMILY[plus_plus] and spec.config == network.config and spec.crop_size == 512
    expected = dict(n_embed=1024, embed_dim=256, ch=64, ch_mult=(1, 2, 2, 4, 4, 8), num_res_blocks=2, z_channels=256,
                    resolution=512, attn_resolutions=(16,), decoder_attn_resolutions=(16, 32) if plus_plus else (16,),
                    head_size=4 if plus_plus else 8)
    assert spec.config == expected


def test_the_two_families_are_never_confused(small):
    plus_plus, network = small
    state_dict = network.state_dict()
    prefixed = {f"vqvae.{k}": v for k, v in state_dict.items()}
    for candidate in (state_dict, prefixed):
        family, spec = detect_family(candidate)
        assert family.name == FAMILY[plus_plus]
        assert spec.name == ("RestoreFormerPlusPlus" if plus_plus else "RestoreFormer")
        assert spec.config["head_size"] == (4 if plus_plus else 8)


def test_network_keys_strip_the_lightning_prefix_and_training_modules(small):
    _, network = small
    state_dict = network.state_dict()
    lightning = {**{f"vqvae.{k}": v for k, v in state_dict.items()}, "loss.discriminator.main.0.weight": torch.zeros(2)}
    assert network_keys(lightning).keys() == state_dict.keys()
    assert network_keys(state_dict) is state_dict


# --- loading files -------------------------------------------------------------------------------------------------

def official_layout(lightning: bool, state_dict: dict) -> dict:
    """GFPGAN's RestoreFormer.pth: a basicsr ``params_ema`` dict; RestoreFormerPlusPlus's .ckpt files: Lightning's
    ``state_dict`` with the network under ``vqvae.`` (plus whatever else the LightningModule held)."""
    if lightning:
        network = {f"vqvae.{k}": v for k, v in state_dict.items()}
        return {"state_dict": {**network, "loss.discriminator.main.0.weight": torch.zeros(4)}, "epoch": 3, "global_step": 7}
    return {"params_ema": state_dict}


@pytest.mark.parametrize("layout", ["pth", "ckpt", "safetensors"])
def test_load_face_restorer_from_official_layouts(tmp_path, small, layout):
    plus_plus, network = small
    if plus_plus and layout == "pth":
        pytest.skip("RestoreFormer++ was released only as a Lightning .ckpt")
    state_dict = {k: v.contiguous() for k, v in network.state_dict().items()}
    path = tmp_path / f"model.{layout}"
    if layout == "safetensors":
        save_file(state_dict, str(path))
    else:
        torch.save(official_layout(layout == "ckpt", state_dict), path)
    restorer = load_face_restorer(path)
    assert restorer.family.name == FAMILY[plus_plus] and restorer.crop_size == 128
    assert restorer.family.fidelity is None and not restorer.family.noise and restorer.family.input_range == (-1, 1)
    x = seeded_faces(1, 128, seed=4)
    assert torch.equal(restorer(x, fidelity=1.0, noise=None), run(network, x))


def test_convert_writes_the_networks_own_keys(tmp_path, small):
    from safetensors.torch import load_file

    from comfyui_gfpgan.face_restorers import convert_to_safetensors

    _, network = small
    state_dict = {k: v.contiguous() for k, v in network.state_dict().items()}
    torch.save(official_layout(True, state_dict), tmp_path / "model.ckpt")
    converted = load_file(str(convert_to_safetensors(tmp_path / "model.ckpt", tmp_path / "model.safetensors")))
    assert converted.keys() == state_dict.keys() and all(torch.equal(converted[k], state_dict[k]) for k in state_dict)


def test_damaged_state_dicts_give_one_line_errors(tmp_path, small):
    plus_plus, network = small
    state_dict = {k: v.contiguous() for k, v in network.state_dict().items()}
    path = tmp_path / "damaged.safetensors"
    cases = [
        ({k: v for k, v in state_dict.items() if k != "decoder.up.1.block.0.conv1.weight"},
         r"does not fit it: 1 missing tensors \(decoder\.up\.1\.block\.0\.conv1\.weight\)"),
        ({**state_dict, "decoder.up.1.block.0.conv1.weight": torch.zeros(3, 3, 3, 3)}, r"tensors of other shapes"),
        ({k: v for k, v in state_dict.items() if k != "encoder.conv_in.weight"},
         r"state dict with missing or odd tensors \('encoder\.conv_in\.weight'\)"),
        ({**state_dict, "quantize.embedding.weight": torch.zeros(64, 7)}, r"codebook width 7"),
    ]
    for damaged, message in cases:
        save_file(damaged, str(path))
        with pytest.raises(ModelLoadError, match=message) as error:
            load_face_restorer(path)
        text = str(error.value)
        assert "\n" not in text and str(path) in text and FAMILY[plus_plus].rstrip("+") in text


def test_detect_refuses_other_state_dicts():
    with pytest.raises(ModelLoadError, match="not a RestoreFormer"):
        detect_architecture({"quantize.embedding.weight": torch.zeros(4, 4)}, "other.pth")
