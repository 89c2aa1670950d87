"""The command-line tool, run in-process through its main()."""

import shutil

import cv2
import numpy as np
import pytest

from comfyui_gfpgan.cli import main


@pytest.fixture(scope="module")
def model(official_weight_files):
    return str(official_weight_files["safetensors"])


def test_restore_folder_keeps_names_and_passes_faceless_images(tmp_path, shared_dir, retinaface_weights, model, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(shared_dir / "images" / "astronaut.png", inputs / "astronaut.png")
    cv2.imwrite(str(inputs / "blank.png"), np.full((64, 80, 3), 90, np.uint8))
    (inputs / "notes.png").write_text("not an image")
    out = tmp_path / "out"
    code = main(["restore", str(inputs), "-o", str(out), "--model", model, "--detector", str(retinaface_weights)])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["astronaut.png", "blank.png"]
    assert (out / "blank.png").read_bytes() == (inputs / "blank.png").read_bytes()
    restored = cv2.imread(str(out / "astronaut.png"))
    assert restored.shape == (512, 512, 3) and not np.array_equal(restored, cv2.imread(str(inputs / "astronaut.png")))
    err = capsys.readouterr().err
    assert "notes.png: not a readable image" in err and "blank.png: no face found" in err
    # nothing is overwritten without --overwrite
    before = (out / "astronaut.png").stat().st_mtime_ns
    main(["restore", str(inputs / "astronaut.png"), "-o", str(out), "--model", model, "--detector", str(retinaface_weights)])
    assert (out / "astronaut.png").stat().st_mtime_ns == before
    assert "exists (use --overwrite)" in capsys.readouterr().err


def test_aligned_crops(tmp_path, model):
    crop = tmp_path / "face.png"
    cv2.imwrite(str(crop), np.random.default_rng(0).integers(0, 255, (512, 512, 3), dtype=np.uint8))
    assert main(["restore", str(crop), "-o", str(tmp_path / "out"), "--model", model, "--aligned"]) == 0
    assert cv2.imread(str(tmp_path / "out" / "face.png")).shape == (512, 512, 3)


def test_inspect_convert_and_errors(tmp_path, official_weight_files, retinaface_weights, capsys):
    assert main(["inspect", str(official_weight_files["pth"])]) == 0
    assert "GFPGANv1Clean" in capsys.readouterr().out
    target = tmp_path / "model.safetensors"
    assert main(["convert", str(official_weight_files["pth"]), str(target)]) == 0 and target.is_file()
    assert main(["convert", str(official_weight_files["pth"]), str(target)]) == 2  # exists
    assert main(["inspect", str(retinaface_weights)]) == 2
    err = capsys.readouterr().err
    assert "RetinaFace" in err and "Traceback" not in err
    assert main(["restore", str(tmp_path), "-o", str(tmp_path / "o"), "--model", str(tmp_path / "absent.pth"),
                 "--detector", str(retinaface_weights)]) == 2


def test_make_test_model_round_trips(tmp_path, capsys):
    path = tmp_path / "seeded.safetensors"
    assert main(["make-test-model", str(path), "--seed", "3"]) == 0
    assert main(["inspect", str(path)]) == 0
    assert "out_size=512" in capsys.readouterr().out


def test_download_is_explicit_and_offline_errors_say_where(tmp_path, capsys, monkeypatch):
    import urllib.request

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert main(["download", "GFPGANv1.4.pth", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth" in err
    assert str(tmp_path / "GFPGANv1.4.pth") in err and not list(tmp_path.iterdir())


def test_restore_download_flag_fetches_only_when_asked(tmp_path, shared_dir, retinaface_weights, capsys, monkeypatch):
    import urllib.request

    requested = []

    def offline(url, *args, **kwargs):
        requested.append(url)
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    model = tmp_path / "models" / "GFPGANv1.4.pth"
    args = ["restore", str(shared_dir / "images" / "astronaut.png"), "-o", str(tmp_path / "out"), "--model", str(model),
            "--detector", str(retinaface_weights)]
    assert main(args) == 2 and requested == []  # no flag: a clear error, nothing fetched
    assert "no such file" in capsys.readouterr().err
    assert main(args + ["--download"]) == 2
    assert requested == ["https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth"]
    assert str(model) in capsys.readouterr().err and not model.exists()
