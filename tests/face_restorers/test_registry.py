"""Loading face restoration files as FaceRestorers: families, round trips, dtypes, foreign files."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from comfyui_gfpgan.face_restorers import compute_dtype, detect_family, convert_to_safetensors, describe_file, load_face_restorer
from comfyui_gfpgan.model_files import ModelLoadError, load_state_dict

from factories import assert_same_tensors


def test_official_files_load_to_the_same_network(official_weight_files, official_clean_network):
    expected = official_clean_network.state_dict()
    for path in official_weight_files.values():
        loaded = load_face_restorer(path)
        assert loaded.arch == "GFPGANv1Clean" and loaded.config["out_size"] == 512
        assert loaded.release is None  # random weights are no official release
        assert_same_tensors(loaded.network.state_dict(), expected)


def test_pth_safetensors_round_trip(tmp_path, small_state_dict):
    pth = tmp_path / "small.pth"
    torch.save({"params_ema": small_state_dict}, pth)
    converted = convert_to_safetensors(pth, tmp_path / "small.safetensors")
    assert_same_tensors(load_file(str(converted)), small_state_dict)
    from safetensors import safe_open

    with safe_open(str(converted), "pt") as handle:
        metadata = handle.metadata()
    assert metadata["arch"] == "GFPGANv1Clean" and '"out_size": 64' in metadata["config"]
    assert metadata["source_file"] == "small.pth" and len(metadata["source_sha256"]) == 64
    back = tmp_path / "back.pth"
    torch.save({"params_ema": load_state_dict(converted)}, back)
    assert_same_tensors(load_state_dict(back), small_state_dict)


def test_convert_onto_a_full_or_unwritable_disk_is_one_line_and_leaves_no_partial_file(tmp_path, small_state_dict,
                                                                                        monkeypatch):
    import errno

    import safetensors.torch
    from safetensors import SafetensorError

    pth = tmp_path / "small.pth"
    torch.save(small_state_dict, pth)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ModelLoadError, match=r"a-file/out.safetensors: cannot write the converted file: .*a-file is "
                                             r"not a folder") as error:
        convert_to_safetensors(pth, blocker / "out.safetensors")  # its folder cannot exist: root cannot write there
    assert "\n" not in str(error.value)

    def fills_the_disk(tensors, filename, metadata=None):  # as safetensors does on ENOSPC: part written, then raise
        with open(filename, "wb") as handle:
            handle.write(b"\0" * 1000)
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: '
                              '"No space left on device" })')

    def cannot_open(tensors, filename, metadata=None):
        raise OSError(errno.ENOSPC, "No space left on device", filename)

    earlier = tmp_path / "earlier.safetensors"
    earlier.write_bytes(b"an earlier conversion")
    for target, writer in ((tmp_path / "out.safetensors", fills_the_disk), (earlier, fills_the_disk),
                           (tmp_path / "out.safetensors", cannot_open)):
        monkeypatch.setattr(safetensors.torch, "save_file", writer)
        with pytest.raises(ModelLoadError, match=rf"{target.name}: cannot write the converted file: .*No space left") as error:
            convert_to_safetensors(pth, target)
        assert "\n" not in str(error.value)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "earlier.safetensors", "small.pth"]
        assert earlier.read_bytes() == b"an earlier conversion"  # an overwrite that failed keeps the old file


def test_describe_file(tmp_path, small_state_dict):
    path = tmp_path / "small.safetensors"
    save_file(small_state_dict, str(path))
    text = describe_file(path)
    assert "GFPGANv1Clean" in text and "out_size=64" in text and "not a known official release" in text


def test_loaded_network_runs_in_bf16(tmp_path, small_state_dict):
    path = tmp_path / "small.safetensors"
    save_file(small_state_dict, str(path))
    network = load_face_restorer(path, dtype=torch.bfloat16).network
    with torch.inference_mode():
        out = network(torch.zeros(1, 3, 64, 64, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_float16_is_refused_with_a_reason(tmp_path, small_state_dict):
    path = tmp_path / "small.safetensors"
    save_file(small_state_dict, str(path))
    with pytest.raises(ModelLoadError, match="bfloat16"):
        load_face_restorer(path, dtype=torch.float16)


def test_one_dtype_chooser():
    assert compute_dtype("auto", bf16_supported=True) == torch.bfloat16
    assert compute_dtype("auto", bf16_supported=False) == torch.float32
    assert compute_dtype("fp32", True) == torch.float32 and compute_dtype("bf16", False) == torch.bfloat16
    with pytest.raises(ModelLoadError, match="overflow half precision"):
        compute_dtype("fp16", True)
    with pytest.raises(ModelLoadError, match="unknown dtype 'int8'; use one of auto, fp32, bf16"):
        compute_dtype("int8", True)


def test_foreign_files(tmp_path):
    esrgan = tmp_path / "4x_esrgan.safetensors"
    save_file({k: torch.zeros(2, 2) for k in ["conv_first.weight", "body.0.rdb1.conv1.weight"]}, str(esrgan))
    for path, looks_like in [(esrgan, "ESRGAN")]:
        with pytest.raises(ModelLoadError, match=looks_like) as error:
            load_face_restorer(path)
        assert str(path) in str(error.value) and "Supported: GFP-GAN" in str(error.value)
    not_a_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], not_a_dict)
    with pytest.raises(ModelLoadError, match="no state dict of tensors"):
        load_face_restorer(not_a_dict)


def test_wrong_shapes_for_detected_config(tmp_path, small_state_dict):
    broken = dict(small_state_dict)
    broken["conv_body_up.0.conv1.weight"] = torch.zeros(3, 3, 3, 3)
    path = tmp_path / "broken.safetensors"
    save_file(broken, str(path))
    with pytest.raises(ModelLoadError, match=r"broken.safetensors: looks like GFP-GAN GFPGANv1Clean .* does not fit it: 1 tensors "
                       r"of other shapes \(file vs network\) \(conv_body_up\.0\.conv1\.weight \(3, 3, 3, 3\) vs"):
        load_face_restorer(path)
    for key in list(broken)[:40]:
        broken[f"extra.{key}"] = broken.pop(key)
    save_file(broken, str(path))
    with pytest.raises(ModelLoadError, match=r"40 missing tensors \(.* and 35 more\); 40 unexpected tensors") as error:
        load_face_restorer(path)
    assert len(str(error.value)) < 1200


@pytest.mark.parametrize(
    "state_dict,expected",
    [
        (dict.fromkeys(["quantize.embedding.weight", "encoder.conv_in.weight", "quant_conv.weight",
                        "decoder.conv_out.weight"], torch.zeros(1)), "VQGAN-style autoencoder"),
        (dict.fromkeys(["conv_first.weight", "body.0.rdb1.conv1.weight", "conv_body.weight"], torch.zeros(1)),
         "ESRGAN"),
        (dict.fromkeys(["model.0.weight", "model.1.sub.0.RDB1.conv1.0.weight"], torch.zeros(1)), "ESRGAN"),
        ({"ClassHead.0.conv1x1.weight": torch.zeros(1), "body.stage1.0.0.weight": torch.zeros(1)}, "RetinaFace"),
        ({"foo": torch.zeros(1)}, "unknown network"),
    ],
    ids=["vqgan", "esrgan", "esrgan-old", "retinaface", "unknown"],
)
def test_foreign_state_dicts_get_a_clear_error(state_dict, expected):
    with pytest.raises(ModelLoadError, match=expected) as error:
        detect_family(state_dict, source="weights.pth")
    assert "weights.pth" in str(error.value) and "Supported" in str(error.value)
