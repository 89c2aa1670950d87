"""The command-line tool, run in-process through its main()."""

import shutil

import cv2
import numpy as np
import pytest

from comfyui_gfpgan.jobs.cli import main


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
    assert code == 1  # an unreadable input is reported, skipped, and makes the exit status non-zero
    assert sorted(p.name for p in out.iterdir()) == ["astronaut.png", "blank.png"]
    assert (out / "blank.png").read_bytes() == (inputs / "blank.png").read_bytes()
    restored = cv2.imread(str(out / "astronaut.png"))
    assert restored.shape == (512, 512, 3) and not np.array_equal(restored, cv2.imread(str(inputs / "astronaut.png")))
    captured = capsys.readouterr()
    assert "notes.png: not a readable image" in captured.err and "blank.png: no face found" in captured.err
    assert "1 restored, 1 unchanged, 1 unreadable" in captured.out
    # nothing is overwritten without --overwrite
    before = (out / "astronaut.png").stat().st_mtime_ns
    main(["restore", str(inputs / "astronaut.png"), "-o", str(out), "--model", model, "--detector", str(retinaface_weights)])
    assert (out / "astronaut.png").stat().st_mtime_ns == before
    assert "exists (use --overwrite)" in capsys.readouterr().err


def test_one_bad_frame_does_not_stop_the_batch(tmp_path, shared_dir, retinaface_weights, model, capsys, monkeypatch):
    import comfyui_gfpgan.face_pipeline.pipeline as pipeline
    from comfyui_gfpgan.face_pipeline.errors import FaceInputError

    real = pipeline.find_faces

    def refuse_33_px_frames(images, *args, **kwargs):  # stands in for any error about one input
        if images.shape[-1] == 33:
            raise FaceInputError("images frame 0 contains NaN or infinite values")
        return real(images, *args, **kwargs)

    monkeypatch.setattr(pipeline, "find_faces", refuse_33_px_frames)
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(shared_dir / "images" / "astronaut.png", inputs / "a_astronaut.png")
    cv2.imwrite(str(inputs / "b_dot.png"), np.full((1, 1, 3), 200, np.uint8))
    cv2.imwrite(str(inputs / "c_line.png"), np.random.default_rng(0).integers(0, 255, (1, 640, 3), dtype=np.uint8))
    cv2.imwrite(str(inputs / "d_bad.png"), np.zeros((33, 33, 3), np.uint8))
    shutil.copy(shared_dir / "images" / "grace_hopper.jpg", inputs / "e_grace_hopper.jpg")
    out = tmp_path / "out"
    code = main(["restore", str(inputs), "-o", str(out), "--model", model, "--detector", str(retinaface_weights)])
    captured = capsys.readouterr()
    assert code == 1 and "2 restored, 2 unchanged, 1 failed" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["a_astronaut.png", "b_dot.png", "c_line.png", "e_grace_hopper.jpg"]
    for tiny in ("b_dot.png", "c_line.png"):  # too small to hold a face: written unchanged
        assert (out / tiny).read_bytes() == (inputs / tiny).read_bytes()
    assert f"failed {inputs / 'd_bad.png'}: images frame 0 contains NaN" in captured.err
    assert "empty" not in captured.err and "Traceback" not in captured.err
    restored = cv2.imread(str(out / "e_grace_hopper.jpg"))
    assert restored.shape == (600, 512, 3) and not np.array_equal(restored, cv2.imread(str(inputs / "e_grace_hopper.jpg")))


def test_recursive_mirrors_the_tree_and_leaves_out_hidden_folders_and_the_output(tmp_path, shared_dir,
                                                                                  retinaface_weights, model, capsys):
    inputs = tmp_path / "archive"
    flat = np.full((40, 50, 3), 120, np.uint8)  # no face: copied as it is
    for name in ("a.png", "2019/b.png", "2020/b.png", ".thumbnails/t.png", "restored/old.png"):
        (inputs / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(inputs / name), flat + len(name))
    (inputs / "2019" / "x").mkdir()
    shutil.copy(shared_dir / "images" / "astronaut.png", inputs / "2019" / "x" / "astronaut.png")
    out = inputs / "restored"  # inside the archive: its outputs are never read as inputs
    args = ["restore", str(inputs), "-o", str(out), "--model", model, "--detector", str(retinaface_weights)]

    assert main(args) == 0
    captured = capsys.readouterr()
    assert f"note: {inputs}: 2 subfolders not read (use --recursive)" in captured.err
    assert "1 unchanged" in captured.out and sorted(p.name for p in out.iterdir()) == ["a.png", "old.png"]

    assert main([*args, "--recursive"]) == 0
    captured = capsys.readouterr()
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["2019/b.png", "2019/x/astronaut.png", "2020/b.png", "a.png", "old.png"]
    assert "1 restored, 2 unchanged, 1 skipped" in captured.out  # a.png: written by the first run
    for name in ("2019/b.png", "2020/b.png"):  # same names in two folders: each its own output
        assert (out / name).read_bytes() == (inputs / name).read_bytes()
    assert (out / "2019/x/astronaut.png").read_bytes() != (inputs / "2019/x/astronaut.png").read_bytes()
    assert "subfolders not read" not in captured.err and "Traceback" not in captured.err


def test_each_per_file_line_is_one_write(tmp_path, retinaface_weights, model, monkeypatch):
    """Ray Data logs from its own thread: a message whose newline came in a second write could end up with one of
    Ray's lines glued to it."""
    import io
    import sys

    class Writes(io.StringIO):
        def __init__(self):
            super().__init__()
            self.calls = []

        def write(self, text):
            self.calls.append(text)
            return super().write(text)

    inputs = tmp_path / "in"
    inputs.mkdir()
    cv2.imwrite(str(inputs / "blank.png"), np.full((64, 64, 3), 128, np.uint8))
    (inputs / "notes.png").write_text("not an image")
    stderr = Writes()
    monkeypatch.setattr(sys, "stderr", stderr)
    code = main(["restore", str(inputs), "-o", str(tmp_path / "out"), "--model", model,
                 "--detector", str(retinaface_weights)])
    lines = [call for call in stderr.calls if ".png:" in call]
    assert code == 1 and sorted(line.strip() for line in lines) == [
        f"{inputs / 'blank.png'}: no face found, written unchanged",
        f"skipped {inputs / 'notes.png'}: not a readable image",
    ]
    assert all(line.endswith("\n") for line in lines), lines


@pytest.mark.parametrize("device,cuda_count,mps,message", [
    ("nonsense", 0, False, "no device name; use cpu, cuda, cuda:N or mps"),
    ("cuda", 0, False, "finds no CUDA device here"),
    ("cuda:7", 2, False, "there are only 2 CUDA devices (cuda:0 to cuda:1)"),
    ("mps", 0, False, "finds no MPS device here"),
    ("mps:1", 0, True, "there is only 1 MPS device (mps:0 to mps:0)"),
    ("meta", 0, False, "not a device this tool runs on"),
])
def test_device_is_checked_before_any_model_loads(tmp_path, monkeypatch, capsys, device, cuda_count, mps, message):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda_count)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    cv2.imwrite(str(tmp_path / "in.png"), np.zeros((8, 8, 3), np.uint8))
    out = tmp_path / "out"
    assert main(["restore", str(tmp_path / "in.png"), "-o", str(out), "--model", str(tmp_path / "absent.pth"),
                 "--detector", str(tmp_path / "absent.pth"), "--device", device]) == 2
    err = capsys.readouterr().err
    assert message in err and f"--device {device}" in err and "absent.pth" not in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_fp16_is_no_dtype_choice(tmp_path, model, capsys):
    from comfyui_gfpgan.jobs import cli
    from comfyui_gfpgan.face_restorers import DTYPE_CHOICES

    assert cli.DTYPE_CHOICES == DTYPE_CHOICES  # the CLI offers exactly the choices compute_dtype takes
    with pytest.raises(SystemExit) as exit_:
        main(["restore", str(tmp_path), "-o", str(tmp_path / "o"), "--model", model, "--aligned", "--dtype", "fp16"])
    assert exit_.value.code == 2 and "invalid choice: 'fp16'" in capsys.readouterr().err


def test_aligned_crops_keep_their_size_grayness_and_alpha(tmp_path, model):
    rng = np.random.default_rng(0)
    inputs = tmp_path / "in"
    inputs.mkdir()
    cv2.imwrite(str(inputs / "face.png"), rng.integers(0, 255, (512, 512, 3), dtype=np.uint8))
    cv2.imwrite(str(inputs / "gray.png"), rng.integers(0, 255, (256, 256), dtype=np.uint8))
    rgba = rng.integers(0, 255, (300, 300, 4), dtype=np.uint8)
    cv2.imwrite(str(inputs / "alpha.png"), rgba)
    out = tmp_path / "out"
    assert main(["restore", str(inputs), "-o", str(out), "--model", model, "--aligned"]) == 0
    assert cv2.imread(str(out / "face.png"), cv2.IMREAD_UNCHANGED).shape == (512, 512, 3)
    assert cv2.imread(str(out / "gray.png"), cv2.IMREAD_UNCHANGED).shape == (256, 256)
    restored = cv2.imread(str(out / "alpha.png"), cv2.IMREAD_UNCHANGED)
    assert restored.shape == (300, 300, 4) and np.array_equal(restored[:, :, 3], rgba[:, :, 3])
    assert not np.array_equal(restored[:, :, :3], rgba[:, :, :3])


@pytest.mark.parametrize("avx512_bf16,amx,expected", [(False, False, "float32"), (True, False, "bfloat16"),
                                                       (False, True, "bfloat16")])
def test_auto_dtype_on_cpu_is_bf16_only_where_it_is_native(monkeypatch, avx512_bf16, amx, expected):
    import torch

    from comfyui_gfpgan.jobs.folder_job import job_dtype as _dtype

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert _dtype("auto", "cpu") == getattr(torch, expected)
    assert _dtype("fp32", "cpu") == torch.float32 and _dtype("auto", "mps") == torch.float32


def test_compile_flag_runs_the_network_through_torch_compile(tmp_path, model, monkeypatch):
    import torch

    compiled = []

    def record_compile(function, **options):  # stands in for inductor, which takes minutes at 512 px
        def run(*args, **kwargs):
            compiled.append(options)
            return function(*args, **kwargs)
        return run

    monkeypatch.setattr(torch, "compile", record_compile)
    crop = tmp_path / "face.png"
    cv2.imwrite(str(crop), np.random.default_rng(0).integers(0, 255, (512, 512, 3), dtype=np.uint8))
    args = ["restore", str(crop), "--model", model, "--aligned"]
    assert main([*args, "-o", str(tmp_path / "eager")]) == 0 and not compiled
    assert main([*args, "-o", str(tmp_path / "compiled"), "--compile"]) == 0
    assert compiled == [{"options": {"freezing": True}}]
    assert np.array_equal(cv2.imread(str(tmp_path / "compiled" / "face.png")), cv2.imread(str(tmp_path / "eager" / "face.png")))


def test_inspect_convert_and_errors(tmp_path, official_weight_files, retinaface_weights, capsys):
    assert main(["inspect", str(official_weight_files["pth"])]) == 0
    assert "GFPGANv1Clean" in capsys.readouterr().out
    target = tmp_path / "model.safetensors"
    assert main(["convert", str(official_weight_files["pth"]), str(target)]) == 0 and target.is_file()
    assert main(["convert", str(official_weight_files["pth"]), str(target)]) == 2  # exists
    assert main(["convert", str(retinaface_weights), str(tmp_path / "detector.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "RetinaFace" in err and "Traceback" not in err  # a detector is no face restorer to convert
    assert main(["restore", str(tmp_path), "-o", str(tmp_path / "o"), "--model", str(tmp_path / "absent.pth"),
                 "--detector", str(retinaface_weights)]) == 2


@pytest.mark.parametrize("content,says", [
    (b"<!DOCTYPE html><html>rate limited</html>", "not a PyTorch checkpoint"),
    (b"hello world\n", "not a PyTorch checkpoint"),
    (bytes(range(256)) * 16, "not a PyTorch checkpoint"),
    (__import__("pickle").dumps(print), "needs more than plain tensors to unpickle"),
])
def test_unreadable_weights_are_one_line(tmp_path, retinaface_weights, capsys, content, says):
    weights = tmp_path / "GFPGANv1.4.pth"
    weights.write_bytes(content)
    cv2.imwrite(str(tmp_path / "in.png"), np.zeros((8, 8, 3), np.uint8))
    assert main(["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / "o"), "--model", str(weights),
                 "--detector", str(retinaface_weights)]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1 and err.startswith(f"error: {weights}")


def test_inspect_names_detector_files(tmp_path, retinaface_weights, yolov5n_face_file, capsys, monkeypatch):
    import dataclasses

    import torch

    from comfyui_gfpgan.model_files import releases
    from comfyui_gfpgan.model_files import file_sha256

    assert main(["inspect", str(retinaface_weights)]) == 0
    out = capsys.readouterr().out
    assert "family:       RetinaFace face detector" in out and "variant:      mobilenet0.25" in out
    assert "licence:      MIT" in out and "release:      not a known official release" in out
    assert f"sha256:       {file_sha256(retinaface_weights)}" in out
    # by its hash: the official file, with the release's licence
    pinned = tuple(dataclasses.replace(r, sha256=file_sha256(retinaface_weights))
                   if r.file_name == "detection_mobilenet0.25_Final.pth" else r for r in releases.KNOWN_RELEASES)
    monkeypatch.setattr(releases, "KNOWN_RELEASES", pinned)
    assert main(["inspect", str(retinaface_weights)]) == 0
    out = capsys.readouterr().out
    assert "release:      official detection_mobilenet0.25_Final.pth (sha256 matches)" in out
    assert "licence:      MIT (xinntao/facexlib)" in out

    assert main(["inspect", str(yolov5n_face_file)]) == 0
    out = capsys.readouterr().out
    assert "family:       YOLOv5-face face detector" in out and "variant:      n" in out
    licence = next(line for line in out.splitlines() if line.startswith("licence:"))
    assert "GPL-3.0" in licence and "S-Lab License 1.0" in licence and "non-commercial" in licence
    assert "release:      named as the official yolov5n-face.pth (no known sha256 to verify it by)" in out
    misnamed = tmp_path / "yolov5l-face.pth"  # an official name holding another size is not claimed
    shutil.copy(yolov5n_face_file, misnamed)
    assert main(["inspect", str(misnamed)]) == 0
    out = capsys.readouterr().out
    assert "variant:      n" in out and "release:      not a known official release" in out

    damaged = torch.load(yolov5n_face_file)
    damaged["model.0.stem_1.conv.weight"] = damaged["model.0.stem_1.conv.weight"][:, :2]
    torch.save(damaged, tmp_path / "damaged.pth")
    assert main(["inspect", str(tmp_path / "damaged.pth")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {tmp_path / 'damaged.pth'}: YOLOv5-face n weights that do not fit") and \
        len(err.splitlines()) == 1


def test_restore_with_a_yolov5_face_detector(tmp_path, shared_dir, small_model, yolov5n_face_file, capsys):
    """CodeFormer's YOLOv5-face files work as --detector. The seeded one scores "faces" near 1 all over a photo,
    so the two most confident are restored."""
    photo = shared_dir / "images" / "grace_hopper.jpg"
    out = tmp_path / "out"
    assert main(["restore", str(photo), "-o", str(out), "--model", small_model, "--detector", str(yolov5n_face_file),
                 "--threshold", "0.5", "--select", "top_k", "--top-k", "2"]) == 0
    captured = capsys.readouterr()
    assert f"{out}: 1 restored" in captured.out and "Traceback" not in captured.err
    original, restored = cv2.imread(str(photo)), cv2.imread(str(out / photo.name))
    assert restored.shape == original.shape and not np.array_equal(restored, original)


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


class _Served:
    """urlopen's answer, offline: these bytes."""

    def __init__(self, data: bytes):
        self.stream = __import__("io").BytesIO(data)

    def read(self, size=-1):
        return self.stream.read(size)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_downloads_check_the_hash_and_warn_where_none_is_known(tmp_path, capsys, monkeypatch):
    import urllib.request

    from comfyui_gfpgan.jobs.cli import build_parser

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, *args, **kwargs: _Served(b"served bytes"))
    assert main(["download", "detection_mobilenet0.25_Final.pth", "--dir", str(tmp_path)]) == 0
    assert (tmp_path / "detection_mobilenet0.25_Final.pth").read_bytes() == b"served bytes"
    err = capsys.readouterr().err
    assert "warning: not verified: no known sha256 for detection_mobilenet0.25_Final.pth" in err
    assert main(["download", "GFPGANv1.4.pth", "--dir", str(tmp_path)]) == 2  # known hash, other bytes
    err = capsys.readouterr().err
    assert "sha256 mismatch" in err and "not verified" not in err and not (tmp_path / "GFPGANv1.4.pth").exists()
    assert not list(tmp_path.glob("*.part"))
    restore_help = " ".join(build_parser()._subparsers._group_actions[0].choices["restore"].format_help().split())
    assert "sha256-checked where a hash is known (a warning says when it is not)" in restore_help


def test_download_list_prints_the_table(capsys):
    from comfyui_gfpgan.model_files.releases import KNOWN_RELEASES

    assert main(["download", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["file", "family", "crop", "sha256", "licence"]
    assert len(lines) == 1 + len(KNOWN_RELEASES)
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {r.file_name for r in KNOWN_RELEASES}
    codeformer = rows["codeformer-v0.1.0.pth"]
    assert " CodeFormer " in codeformer and " 512 px " in codeformer and " verified " in codeformer
    assert "S-Lab License 1.0" in codeformer and "non-commercial" in codeformer
    assert " not verified " in rows["RestoreFormer++.ckpt"] and " RestoreFormer++ " in rows["RestoreFormer++.ckpt"]
    assert " ONNX: GPEN " in rows["GPEN-BFR-2048.onnx"] and " 2048 px " in rows["GPEN-BFR-2048.onnx"]
    assert " YOLOv5-face " in rows["yolov5l-face.pth"] and " not verified " in rows["yolov5l-face.pth"]
    assert main(["download"]) == 2 and "download --list" in capsys.readouterr().err  # neither a name nor --list


def test_download_says_when_the_licence_is_non_commercial(tmp_path, capsys, monkeypatch):
    import urllib.request

    requested = []

    def served(url, *args, **kwargs):
        requested.append(url)
        return _Served(b"not the checkpoint")

    monkeypatch.setattr(urllib.request, "urlopen", served)
    assert main(["download", "codeformer.pth", "--dir", str(tmp_path)]) == 2  # the alias; other bytes
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert notes == ["note: codeformer-v0.1.0.pth: S-Lab License 1.0: non-commercial use only "
                     "(sczhou/CodeFormer, code and weights)"]
    assert requested == ["https://github.com/sczhou/CodeFormer/releases/download/v0.1.0/codeformer.pth"]
    assert "sha256 mismatch" in err and not list(tmp_path.iterdir())
    assert main(["download", "GFPGANv1.3.pth", "--dir", str(tmp_path)]) == 2  # Apache-2.0: no note
    assert "note:" not in capsys.readouterr().err


def test_download_fetches_yolov5_face_files_from_codeformers_release(tmp_path, capsys, monkeypatch):
    import urllib.request

    requested = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, *a, **k: requested.append(url) or _Served(b"served"))
    assert main(["download", "yolov5n-face.pth", "--dir", str(tmp_path)]) == 0
    assert requested == ["https://github.com/sczhou/CodeFormer/releases/download/v0.1.0/yolov5n-face.pth"]
    assert (tmp_path / "yolov5n-face.pth").read_bytes() == b"served"
    err = capsys.readouterr().err
    note = next(line for line in err.splitlines() if line.startswith("note:"))
    assert note.startswith("note: yolov5n-face.pth: code GPL-3.0") and "S-Lab License 1.0, non-commercial" in note
    assert "warning: not verified: no known sha256 for yolov5n-face.pth" in err


def test_download_falls_back_to_the_mirrors(tmp_path, capsys, monkeypatch):
    import urllib.request

    from comfyui_gfpgan.model_files.releases import find_release

    release = find_release(file_name="GPEN-BFR-512.pth")
    requested = []

    def first_host_down(url, *args, **kwargs):
        requested.append(url)
        if url == release.url:
            raise OSError("host gone")
        return _Served(b"mirror bytes")

    monkeypatch.setattr(urllib.request, "urlopen", first_host_down)
    assert main(["download", "GPEN-BFR-512.pth", "--dir", str(tmp_path)]) == 0
    assert requested == [release.url, release.mirrors[0]]
    assert (tmp_path / "GPEN-BFR-512.pth").read_bytes() == b"mirror bytes"
    err = capsys.readouterr().err
    assert f"not verified: no known sha256 for GPEN-BFR-512.pth; {tmp_path / 'GPEN-BFR-512.pth'} is whatever " \
        f"{release.mirrors[0]} served" in err
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, *a, **k: (_ for _ in ()).throw(OSError("offline")))
    assert main(["download", "GPEN-BFR-512.pth", "--dir", str(tmp_path), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert all(url in err for url in (release.url, *release.mirrors)) and not list(tmp_path.glob("*.part"))


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


def test_image_io_keeps_depth_alpha_gray_and_turns_jpegs_upright(tmp_path):
    from PIL import Image

    from comfyui_gfpgan.jobs.folder_job import read_image as _read_image, write_image as _write_image

    rng = np.random.default_rng(0)
    deep = rng.integers(0, 65535, (20, 30, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    image, depth = _read_image(tmp_path / "deep.png")
    assert depth == 16 and image.shape == (20, 30, 3)
    _write_image(tmp_path / "deep_out.png", image, depth)
    assert np.array_equal(cv2.imread(str(tmp_path / "deep_out.png"), cv2.IMREAD_UNCHANGED), deep)

    rgba = rng.integers(0, 255, (20, 30, 4), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "alpha.png"), rgba)
    image, depth = _read_image(tmp_path / "alpha.png")
    assert depth == 8 and image.shape == (20, 30, 4)
    assert np.allclose(image[:, :, 3], rgba[:, :, 3] / 255) and np.allclose(image[:, :, 0], rgba[:, :, 2] / 255)
    _write_image(tmp_path / "alpha_out.png", image)
    assert np.array_equal(cv2.imread(str(tmp_path / "alpha_out.png"), cv2.IMREAD_UNCHANGED), rgba)

    cv2.imwrite(str(tmp_path / "gray.png"), rgba[:, :, 0])
    assert _read_image(tmp_path / "gray.png")[0].shape == (20, 30, 1)

    # a phone photo stored sideways with EXIF orientation 6 (rotate 90 degrees clockwise to view)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "phone.jpg", exif=exif)
    assert _read_image(tmp_path / "phone.jpg")[0].shape == (30, 20, 3)


def test_same_names_and_in_place_runs(tmp_path, retinaface_weights, model, capsys):
    blank = np.full((64, 80, 3), 90, np.uint8)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "frame.png"), blank)
    common = ["--model", model, "--detector", str(retinaface_weights)]
    assert main(["restore", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "out"), *common]) == 0
    captured = capsys.readouterr()
    assert "an earlier input already wrote" in captured.err and "1 unchanged, 1 skipped" in captured.out
    # restoring a folder into itself: faceless images stay as they are, no error
    before = (tmp_path / "a" / "frame.png").read_bytes()
    assert main(["restore", str(tmp_path / "a"), "-o", str(tmp_path / "a"), "--overwrite", *common]) == 0
    assert (tmp_path / "a" / "frame.png").read_bytes() == before


def test_user_errors_are_one_line(tmp_path, retinaface_weights, model, capsys):
    blocked = tmp_path / "file"
    blocked.write_text("a file where the output folder should go")
    cv2.imwrite(str(tmp_path / "in.png"), np.zeros((8, 8, 3), np.uint8))
    assert main(["restore", str(tmp_path / "in.png"), "-o", str(blocked / "out"), "--model", model,
                 "--detector", str(retinaface_weights)]) == 2
    assert main(["restore", str(tmp_path / "nothing_here"), "-o", str(tmp_path / "o"), "--model", model,
                 "--detector", str(retinaface_weights)]) == 2
    assert main(["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / "o"), "--model", model]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "no input images found" in err and "--detector is required" in err


def test_detection_flags_default_to_the_settings_and_reach_them(tmp_path, shared_dir, retinaface_weights, model, capsys):
    from dataclasses import fields

    from comfyui_gfpgan.jobs.cli import build_parser
    from comfyui_gfpgan.face_pipeline.pipeline import DetectSettings

    args = build_parser().parse_args(["restore", "x.png", "-o", "out", "--model", model])
    flags = dict(threshold="threshold", select="selection", top_k="top_k", min_face="min_face_size",
                 max_face="max_face_size", working_size="working_size", min_eye_distance="min_eye_distance",
                 order="order", face_indices="face_indices")
    defaults = {f.name: f.default for f in fields(DetectSettings)}
    assert {flag: getattr(args, flag) for flag in flags} == {flag: defaults[name] for flag, name in flags.items()}
    common = [str(shared_dir / "images" / "astronaut.png"), "--model", model, "--detector", str(retinaface_weights)]
    for extra, outcome in ((["--face-indices", "1"], ": 1 unchanged"),  # the photo has one face
                           (["--min-eye-distance", "45"], ": 1 unchanged"),  # its eyes are 42.7 px apart
                           (["--order", "left_to_right", "--face-indices", "0"], ": 1 restored")):
        assert main(["restore", *common, "-o", str(tmp_path / "-".join(extra)), *extra]) == 0
        assert outcome in capsys.readouterr().out, extra


@pytest.mark.parametrize("flags,message", [
    (["--threshold", "5"], "threshold"), (["--working-size", "-5"], "working_size"), (["--top-k", "0"], "top_k"),
    (["--min-face", "-3"], "negative"), (["--min-face", "300", "--max-face", "100"], "above max_face_size"),
    (["--min-eye-distance", "-1"], "negative"), (["--face-indices", "2-1"], "backwards"),
    (["--chunk", "0"], "chunk_size"), (["--fidelity", "2"], "fidelity"), (["--blend", "-1"], "blend"),
    (["--jobs", "0"], "--jobs must be a whole number in 1..256, got 0"),
    (["--jobs", "100000"], "--jobs must be a whole number in 1..256, got 100000"),  # once 200000 threads, then a crash
    (["--max-megapixels", "0"], "--max-megapixels must be above 0"),
    (["--detect-batch", "0"], "detect_batch must be a whole number >= 1"),
])
def test_impossible_settings_are_one_line_errors_before_any_model_loads(flags, message, tmp_path, shared_dir,
                                                                         retinaface_weights, capsys):
    # The model file does not exist: the setting must be refused before anything is loaded or written.
    code = main(["restore", str(shared_dir / "images" / "astronaut.png"), "-o", str(tmp_path / "out"),
                 "--model", str(tmp_path / "missing.pth"), "--detector", str(retinaface_weights), *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err and "missing.pth" not in err
    assert not (tmp_path / "out").exists()


def test_inspect_names_family_config_crop_size_and_knob(tmp_path, capsys):
    import torch

    from comfyui_gfpgan.codeformer_arch.testing import seeded_codeformer
    from comfyui_gfpgan.gpen_arch.testing import seeded_gpen_network

    codeformer = tmp_path / "codeformer.pth"
    torch.save({"params_ema": seeded_codeformer(0, dim_embd=64, n_layers=1, nf=32, emb_dim=32).state_dict()}, codeformer)
    assert main(["inspect", str(codeformer)]) == 0
    out = capsys.readouterr().out
    assert "family:       CodeFormer (NTU S-Lab License 1.0" in out and "non-commercial" in out
    assert "crop size:    512 px" in out and "fidelity:     w (0 = the codebook's prior" in out
    assert "n_layers=1" in out
    gpen = tmp_path / "GPEN-BFR-256.pth"
    torch.save(seeded_gpen_network(256, seed=0).state_dict(), gpen)
    assert main(["inspect", str(gpen)]) == 0
    out = capsys.readouterr().out
    assert "family:       GPEN" in out and "crop size:    256 px" in out and "none (this family has no fidelity knob)" in out


def test_fidelity_on_a_family_without_the_knob_is_said_once(tmp_path, capsys, caplog, comfy_nodes):
    import torch

    from comfyui_gfpgan.face_restorers import load_face_restorer
    from comfyui_gfpgan.gpen_arch.testing import seeded_gpen_network
    from comfyui_gfpgan.nodes.loaders import log_knobs

    gpen = tmp_path / "GPEN-BFR-256.pth"
    torch.save(seeded_gpen_network(256, seed=0).state_dict(), gpen)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), np.full((256, 256, 3), 100, np.uint8))
    args = ["restore", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--model", str(gpen), "--aligned"]
    assert main([*args, "-o", str(tmp_path / "out"), "--fidelity", "0.3"]) == 0
    assert capsys.readouterr().err.count("note: GPEN has no fidelity knob; --fidelity is ignored") == 1
    assert main([*args, "-o", str(tmp_path / "default")]) == 0
    assert "fidelity" not in capsys.readouterr().err  # nothing to say when the user did not ask for it
    log_knobs(load_face_restorer(gpen))  # the nodes say it in the same words, once per load
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        "GPEN has no fidelity knob; the restore nodes' fidelity is ignored for it"]


def test_progress_and_summary_give_the_throughput_and_jobs_reach_the_stream(tmp_path, retinaface_weights, model,
                                                                             capsys, monkeypatch):
    import comfyui_gfpgan.face_pipeline.stream as stream

    workers, real = [], stream.restore_stream

    def record_workers(*args, **kwargs):
        workers.append(kwargs["workers"])
        return real(*args, **kwargs)

    monkeypatch.setattr(stream, "restore_stream", record_workers)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for index in range(3):
        cv2.imwrite(str(inputs / f"{index}.png"), np.full((64, 80, 3), 60 * index, np.uint8))
    common = [str(inputs), "--model", model, "--detector", str(retinaface_weights)]
    assert main(["restore", *common, "-o", str(tmp_path / "out"), "--jobs", "3"]) == 0
    captured = capsys.readouterr()
    final = captured.err.split("\r")[-1]
    assert final.startswith("restoring [") and " 3/3  " in final and final.endswith("\n")
    assert " files/s  " in final and " faces/s  ETA 0:00" in final
    summary = captured.out.strip()
    assert summary.startswith(f"{tmp_path / 'out'}: 3 unchanged (3 images in ") and summary.endswith(" 0.00 faces/s)")
    assert workers == [3]
    assert main(["restore", *common, "-o", str(tmp_path / "out2")]) == 0
    assert workers == [3, min(4, __import__("os").cpu_count())]  # the default


def test_detect_batch_lets_a_folder_job_detect_several_images_per_call(tmp_path, retinaface_weights, model, shared_dir,
                                                                       capsys, monkeypatch):
    """``--detect-batch 4``: images of one size share detector calls (each still gets its own face); without it,
    on the CPU, one image a call."""
    import time

    from comfyui_gfpgan.face_detectors.interface import FaceDetector

    calls, real_detect = [], FaceDetector.detect

    def record(self, images, *args, **kwargs):
        calls.append(len(images))
        if len(calls) == 1:
            time.sleep(0.5)  # the other images are loaded meanwhile, and wait together for the next call
        return real_detect(self, images, *args, **kwargs)

    monkeypatch.setattr(FaceDetector, "detect", record)
    inputs = tmp_path / "in"
    inputs.mkdir()
    astronaut = cv2.imread(str(shared_dir / "images" / "astronaut.png"))
    for index in range(4):
        cv2.imwrite(str(inputs / f"{index}.png"), np.roll(astronaut, 7 * index, axis=1))
    common = [str(inputs), "--model", model, "--detector", str(retinaface_weights), "--jobs", "4"]
    assert main(["restore", *common, "-o", str(tmp_path / "batched"), "--detect-batch", "4"]) == 0
    assert ": 4 restored (4 images" in capsys.readouterr().out
    assert sum(calls) == 4 and max(calls) > 1, calls
    calls.clear()
    assert main(["restore", *common, "-o", str(tmp_path / "alone")]) == 0
    assert ": 4 restored (4 images" in capsys.readouterr().out and calls == [1, 1, 1, 1]


def test_an_interrupted_restore_resumes_where_it_stopped(tmp_path, retinaface_weights, model, capsys, monkeypatch):
    from comfyui_gfpgan.jobs import cli

    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for index in range(24):
        cv2.imwrite(str(inputs / f"{index}.png"), np.full((64, 80, 3), 10 * index, np.uint8))
    real_update = cli._Progress.update

    def interrupt_after_three(self, faces, kind=None):  # Ctrl-C while the fourth outcome is reported
        if self.done == 3:
            raise KeyboardInterrupt
        real_update(self, faces, kind)

    monkeypatch.setattr(cli._Progress, "update", interrupt_after_three)
    common = [str(inputs), "-o", str(out), "--model", model, "--detector", str(retinaface_weights), "--jobs", "2"]
    assert main(["restore", *common]) == 130
    assert "interrupted" in capsys.readouterr().err
    written = sorted(p.name for p in out.iterdir())
    assert 3 <= len(written) < 24 and all(name.endswith(".png") for name in written)  # nothing partial is left
    monkeypatch.setattr(cli._Progress, "update", real_update)
    assert main(["restore", *common]) == 0
    assert f"{24 - len(written)} unchanged, {len(written)} skipped" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{index}.png" for index in range(24))
    for index in range(24):
        assert (out / f"{index}.png").read_bytes() == (inputs / f"{index}.png").read_bytes()
