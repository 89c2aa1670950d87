"""Issue 17's jobs-side cases, as an attacker would try them: hostile images, in-place runs, thread counts, messages
that named the wrong cause, silent surprises and the help. Each failed on the code before its fix."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from comfyui_gfpgan.jobs.cli import main
from comfyui_gfpgan.jobs.folder_job import UnreadableImage, read_image
from factories import header_bomb, zlib_bomb
from paths import REPO_ROOT


def huge_jpeg(path: Path, side: int = 12000) -> Path:
    cv2.imwrite(str(path), np.full((side, side), 128, np.uint8))
    return path


def restore_args(inputs, out, small_model, retinaface_weights, *extra) -> list[str]:
    return ["restore", *map(str, inputs), "-o", str(out), "--model", small_model, "--detector", str(retinaface_weights),
            *extra]


def run_cli(args: list[str], preamble: str = "", timeout: int = 300) -> subprocess.CompletedProcess:
    """The CLI in a process of its own, after ``preamble`` (e.g. a resource limit): its real stderr, OpenCV's C
    logging included."""
    code = textwrap.dedent(f"""
        import sys
        {preamble}
        from comfyui_gfpgan.jobs.cli import main
        sys.exit(main({args!r}))
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)


# --- 1. decompression bombs and huge images ---------------------------------------------------------------------

def test_a_bomb_a_huge_jpeg_and_a_good_photo_restore_the_photo_and_name_the_others(tmp_path, shared_dir, small_model,
                                                                                   retinaface_weights):
    inputs = tmp_path / "in"
    inputs.mkdir()
    header_bomb(inputs / "a_header_bomb.png")
    zlib_bomb(inputs / "b_zlib_bomb.png")
    huge_jpeg(inputs / "c_huge.jpg")
    shutil.copy(shared_dir / "images" / "astronaut.png", inputs / "d_astronaut.png")
    out = tmp_path / "out"
    run = run_cli(restore_args([inputs], out, small_model, retinaface_weights))
    assert run.returncode == 1 and "Traceback" not in run.stderr and "[ERROR" not in run.stderr, run.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["d_astronaut.png"]
    for name, size in (("a_header_bomb.png", "3600 megapixels"), ("b_zlib_bomb.png", "12000x12000 (144 megapixels)"),
                       ("c_huge.jpg", "12000x12000 (144 megapixels)")):
        assert f"skipped {inputs / name}: {size}" in run.stderr, name
    assert "over the 100 megapixel limit: not decoded (--max-megapixels)" in run.stderr
    assert run.stdout.strip().startswith(f"{out}: 1 restored, 3 unreadable (1 image in ")


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif", ".bmp", ".gif"])
def test_damaged_files_of_every_format_are_one_line_unreadable(tmp_path, suffix):
    """Truncated files and flipped bytes, in the header and anywhere: an image, or one line saying why."""
    import random

    cv2.imwrite(str(tmp_path / f"seed{suffix}"), np.random.default_rng(0).integers(0, 255, (24, 32, 3), np.uint8))
    data, pick = (tmp_path / f"seed{suffix}").read_bytes(), random.Random(suffix)
    for case in range(40):
        damaged = bytearray(data[: pick.randrange(len(data))] if case % 3 == 0 else data)
        for _ in range(case % 3 and pick.randrange(1, 10)):
            damaged[pick.randrange(min(len(damaged), 64) if case % 3 == 1 else len(damaged))] = pick.randrange(256)
        path = tmp_path / f"{case}{suffix}"
        path.write_bytes(bytes(damaged))
        try:
            image, _ = read_image(path)
            assert image.ndim == 3
        except UnreadableImage as error:
            assert str(error) and "\n" not in str(error)


def test_decoding_past_the_memory_limit_is_a_memory_error_of_that_file(tmp_path):
    """--max-megapixels raised past what memory holds: OpenCV's "Insufficient memory" (a cv2.error, which stopped
    the batch) becomes a MemoryError, which fails that file alone (as test_cli's out-of-memory cases check)."""
    path = huge_jpeg(tmp_path / "huge.jpg")  # 144 MB to decode
    cv2.imwrite(str(tmp_path / "small.jpg"), np.zeros((8, 8), np.uint8))
    code = textwrap.dedent(f"""
        import resource
        from pathlib import Path
        from comfyui_gfpgan.jobs.folder_job import read_image
        read_image(Path({str(tmp_path / "small.jpg")!r}))  # every decoder loaded before the limit
        used = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (used + 100 * 2**20, resource.RLIM_INFINITY))
        try:
            read_image(Path({str(path)!r}), max_megapixels=1000)
        except MemoryError as error:
            print("MemoryError:", error)
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.stdout.strip() == "MemoryError: out of memory decoding it", run.stderr[-2000:]


def test_the_cpu_allocators_out_of_memory_is_one_files_failure():
    import torch

    from comfyui_gfpgan.face_pipeline.stream import item_error

    with pytest.raises(RuntimeError) as raised:
        torch.empty(2**50, dtype=torch.uint8)  # (a plain RuntimeError: the stream once stopped on it)
    error = item_error(raised.value)
    assert isinstance(error, MemoryError) and str(error) == "out of memory (tried to allocate 1048576.0 GiB)"
    with pytest.raises(RuntimeError, match="a bug"):
        item_error(RuntimeError("a bug"))  # any other error still stops the stream


# --- 2. an output never replaces an input ------------------------------------------------------------------------

def test_restoring_a_folder_into_itself_replaces_no_photo_even_with_overwrite(tmp_path, shared_dir, small_model,
                                                                            retinaface_weights, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(shared_dir / "images" / "astronaut.png", folder / "astronaut.png")
    before = (folder / "astronaut.png").read_bytes()
    for extra in ([], ["--overwrite"]):
        assert main(restore_args([folder], folder, small_model, retinaface_weights, *extra)) == 0
        captured = capsys.readouterr()
        assert f"skipped {folder / 'astronaut.png'}: its output would replace itself; inputs are never written over " \
            "(choose another -o)" in captured.err
        assert "use --overwrite" not in captured.err and f"{folder}: 1 skipped" in captured.out
        assert (folder / "astronaut.png").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["astronaut.png"]


def test_an_output_onto_another_input_or_through_the_api_is_refused(tmp_path, shared_dir, small_model,
                                                                   retinaface_weights, capsys):
    from comfyui_gfpgan.jobs.folder_job import FolderJob, JobSpec

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        shutil.copy(shared_dir / "images" / "astronaut.png", tmp_path / folder / "face.png")
    before = (tmp_path / "b" / "face.png").read_bytes()
    # a/face.png would go to b/face.png, which is b's input; b's own goes nowhere: -o is b
    assert main(restore_args([tmp_path / "a", tmp_path / "b"], tmp_path / "b", small_model, retinaface_weights,
                             "--overwrite")) == 0
    err = capsys.readouterr().err
    assert f"skipped {tmp_path / 'a' / 'face.png'}: its output would replace the input {tmp_path / 'b' / 'face.png'}" \
        in err and f"skipped {tmp_path / 'b' / 'face.png'}: its output would replace itself" in err
    assert (tmp_path / "b" / "face.png").read_bytes() == before
    job = FolderJob(JobSpec(model=small_model, detector=str(retinaface_weights)))  # the Python API, as Ray calls it
    photo = tmp_path / "a" / "face.png"
    outcomes = list(job.restore_files([(photo, tmp_path / "a" / "." / "face.png")]))
    assert [(o.status, o.message.split(";")[0]) for o in outcomes] == [("skipped", "its output would replace itself")]
    assert photo.read_bytes() == before


# --- 3. thread counts --------------------------------------------------------------------------------------------

def test_jobs_are_bounded_by_the_files_and_the_cores(tmp_path, small_model, retinaface_weights, capsys, monkeypatch):
    import comfyui_gfpgan.face_pipeline.stream as stream

    workers, real = [], stream.restore_stream
    monkeypatch.setattr(stream, "restore_stream", lambda *a, **k: workers.append(k["workers"]) or real(*a, **k))
    for index in range(3):
        cv2.imwrite(str(tmp_path / f"{index}.png"), np.full((40, 50, 3), 50 * index, np.uint8))
    files = [tmp_path / f"{index}.png" for index in range(3)]
    assert main(restore_args(files, tmp_path / "out", small_model, retinaface_weights, "--jobs", "200")) == 0
    assert workers == [min(3, 4 * os.cpu_count())]  # 200 asked: 3 files, so 3 threads of each kind
    assert main(restore_args(files, tmp_path / "out", small_model, retinaface_weights, "--jobs", "257")) == 2
    assert "--jobs must be a whole number in 1..256, got 257" in capsys.readouterr().err


# --- 7. messages that named the wrong cause ----------------------------------------------------------------------

def test_a_float_tiff_and_an_unreadable_file_say_why(tmp_path):
    cv2.imwrite(str(tmp_path / "float.tif"), np.random.default_rng(0).random((10, 12, 3), np.float32))
    with pytest.raises(UnreadableImage, match="^float32 samples: only 8- and 16-bit images are restored$"):
        read_image(tmp_path / "float.tif")
    locked = tmp_path / "locked.png"
    cv2.imwrite(str(locked), np.zeros((8, 8, 3), np.uint8))
    locked.chmod(0)
    code = (f"from pathlib import Path\nfrom comfyui_gfpgan.jobs.folder_job import read_image\n"
            f"try:\n    read_image(Path({str(locked)!r}))\nexcept Exception as error:\n    print(error)")
    command = [sys.executable, "-c", code]
    if os.geteuid() == 0:  # root reads any file: the read runs without the capabilities that let it
        if not shutil.which("setpriv"):
            pytest.skip("running as root, and no setpriv to drop CAP_DAC_OVERRIDE")
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *command]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.stdout.strip() == "could not read it: Permission denied", run.stderr[-2000:]


def test_a_full_disk_on_a_video_names_the_disk_not_a_damaged_frame(tmp_path, small_model, retinaface_weights):
    av = pytest.importorskip("av")
    from fractions import Fraction

    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    with av.open(str(inputs / "noise.mp4"), mode="w") as container:  # no face; noise encodes large
        stream = container.add_stream("mpeg4", rate=Fraction(12))
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(6):
            frame = rng.integers(0, 255, (120, 160, 3), np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    # a file-size limit: writing past it fails as a full disk does (EFBIG instead of ENOSPC)
    preamble = ("import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
                "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))")
    run = run_cli(restore_args([inputs], out, small_model, retinaface_weights), preamble)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert f"failed {inputs / 'noise.mp4'}: could not write {out / 'noise.mp4'}: File too large" in run.stderr
    assert "damaged" not in run.stderr and not out.joinpath("noise.mp4").exists()


def test_a_restoring_error_in_a_video_is_its_own_message(tmp_path):
    """E.g. a seed that runs past the generator's range part way through: not "a damaged frame"."""
    av = pytest.importorskip("av")
    from fractions import Fraction

    from comfyui_gfpgan.face_pipeline.errors import FaceInputError
    from comfyui_gfpgan.jobs.video_file import restore_video

    with av.open(str(tmp_path / "grey.mp4"), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(12))
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")))
        container.mux(stream.encode(None))

    def refuse(frames):
        raise FaceInputError("seed must be a whole number in 0..9223372036854775807, got 9223372036854775808")

    with pytest.raises(FaceInputError, match="^seed must be a whole number"):
        restore_video(tmp_path / "grey.mp4", tmp_path / "out.mp4", ".mp4", refuse)


def test_a_folder_given_as_a_model_is_named_a_folder(tmp_path, small_model, retinaface_weights, capsys):
    cv2.imwrite(str(tmp_path / "in.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "models").mkdir()
    assert main(restore_args([tmp_path / "in.png"], tmp_path / "out", str(tmp_path / "models"),
                             retinaface_weights)) == 2
    assert main(restore_args([tmp_path / "in.png"], tmp_path / "out", small_model, tmp_path / "models")) == 2
    assert main(["inspect", str(tmp_path / "models")]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line]
    assert lines[-3:] == [f"error: {tmp_path / 'models'}: is a folder, not a model file."] * 3
    assert not (tmp_path / "out").exists()


def test_opencvs_own_log_lines_stay_out_of_the_output(tmp_path, small_model, retinaface_weights):
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "odd.tif", exif=exif)  # OpenCV cannot read it
    run = run_cli(restore_args([tmp_path / "odd.tif"], tmp_path / "out", small_model, retinaface_weights))
    assert run.returncode == 1 and "[ERROR" not in run.stderr and "[ WARN" not in run.stderr, run.stderr
    assert f"skipped {tmp_path / 'odd.tif'}: not a readable image" in run.stderr


def test_the_summary_counts_images_and_videos_and_no_failure(tmp_path, small_model, retinaface_weights, capsys):
    av = pytest.importorskip("av")
    from fractions import Fraction

    with av.open(str(tmp_path / "grey.mp4"), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(12))
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")))
        container.mux(stream.encode(None))
    cv2.imwrite(str(tmp_path / "blank.png"), np.full((40, 50, 3), 90, np.uint8))
    (tmp_path / "notes.png").write_text("not an image")
    assert main(restore_args([tmp_path], tmp_path / "out", small_model, retinaface_weights)) == 1
    summary = capsys.readouterr().out.strip()
    assert re.fullmatch(rf"{re.escape(str(tmp_path / 'out'))}: 2 unchanged, 1 unreadable \(1 image, 1 video in "
                        r"[\d.]+ s: [\d.]+ files/s, 0\.00 faces/s\)", summary), summary


# --- 8. silent surprises -----------------------------------------------------------------------------------------

def test_an_empty_output_name_and_a_failing_run_make_no_folder(tmp_path, small_model, retinaface_weights, capsys,
                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    cv2.imwrite(str(tmp_path / "in.png"), np.full((40, 50, 3), 90, np.uint8))
    assert main(restore_args(["in.png"], "", small_model, retinaface_weights)) == 2
    assert "error: -o: an empty name; write -o . for the current folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]
    # a model that cannot load: nothing runs, and no empty output folder is left behind
    assert main(restore_args(["in.png"], "out", str(tmp_path / "absent.pth"), retinaface_weights)) == 2
    assert not (tmp_path / "out").exists()
    (tmp_path / "file").write_text("")
    assert main(restore_args(["in.png"], "file/out", small_model, retinaface_weights)) == 2
    assert "error: -o file/out: file is a file, not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif"])
def test_exif_orientation_is_honoured_in_every_format(tmp_path, suffix):
    from PIL import Image, ImageOps

    pixels = np.random.default_rng(1).integers(0, 255, (20, 30, 3), np.uint8)
    # (OpenCV's TIFF reader, libtiff's, turns TIFFs itself, and fails on the transposing orientations 5..8)
    for orientation in range(1, 5 if suffix == ".tif" else 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = tmp_path / f"o{orientation}{suffix}"
        # (a TIFF's orientation is its own tag; OpenCV cannot read Pillow's TIFFs with an EXIF block)
        Image.fromarray(pixels).save(path, **({"tiffinfo": {0x0112: orientation}} if suffix == ".tif" else
                                              {"exif": exif, "lossless": True} if suffix == ".webp" else {"exif": exif}))
        with Image.open(path) as stored:
            expected = np.asarray(ImageOps.exif_transpose(stored).convert("RGB"))
        image, _ = read_image(path)
        assert np.array_equal((image * 255).round().astype(np.uint8), expected), (suffix, orientation)


def test_animated_images_are_refused_and_still_gifs_restored(tmp_path, small_model, retinaface_weights, capsys):
    from PIL import Image

    frames = [Image.fromarray(np.full((40, 50, 3), value, np.uint8)) for value in (40, 200)]
    for name in ("anim.gif", "anim.webp", "anim.png"):
        frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:], duration=100)
    frames[0].save(tmp_path / "still.gif")
    assert main(restore_args([tmp_path], tmp_path / "out", small_model, retinaface_weights)) == 1
    captured = capsys.readouterr()
    for name in ("anim.gif", "anim.webp", "anim.png"):
        assert f"skipped {tmp_path / name}: an animated image (2 frames): only still images are restored" \
            in captured.err, name
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["still.gif"]  # (in a folder too: no face)
    assert (tmp_path / "out" / "still.gif").read_bytes() == (tmp_path / "still.gif").read_bytes()


def test_control_characters_in_names_cannot_forge_lines(tmp_path, small_model, retinaface_weights, capsys):
    names = ["a\nrestored fake.png", "b\x1b[2K\rcleared.png"]
    for name in names:
        (tmp_path / name).write_text("not an image")
    assert main(restore_args([tmp_path], tmp_path / "out", small_model, retinaface_weights)) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\nrestored fake" not in err
    assert f"skipped {tmp_path}/a\\nrestored fake.png: " in err and f"skipped {tmp_path}/b\\x1b[2K\\rcleared.png: " in err


# --- 10. help ----------------------------------------------------------------------------------------------------

def test_every_option_has_help_defaults_and_every_command_a_description(capsys):
    import argparse

    from comfyui_gfpgan.jobs.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, command in commands.items():
        assert command.description and command.description[0].isupper(), name
        for action in command._actions:
            assert action.help, (name, action.dest)  # --noise --seed --select --top-k --color-correction --overwrite
    with pytest.raises(SystemExit):
        main(["restore", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 1.0)" in text and "(default: fixed)" in text and "--seed SEED with --noise seeded" in text
    assert "restore the faces in images, videos or folders of them" in commands["restore"].description.lower() or \
        "video files" in commands["restore"].description
    assert "--detector DETECTOR face detector weights, the family told from the file: RetinaFace " \
        "(detection_Resnet50_Final.pth, detection_mobilenet0.25_Final.pth) or YOLOv5-face (yolov5l-face.pth, " \
        "yolov5n-face.pth); required unless --aligned" in text
    assert "(default: the detector's: 0.97 for RetinaFace, GFPGANer's; 0.7 for YOLOv5-face, its upstream code's)" in text
    with pytest.raises(SystemExit):
        main(["--version"])
    assert re.fullmatch(r"comfyui-gfpgan \d+\.\d+\.\d+\S*", capsys.readouterr().out.strip())


def test_install_hints_name_what_can_be_installed():
    readme = (REPO_ROOT / "README.md").read_text()
    assert 'pip install "comfyui-gfpgan[' not in readme and "pip install comfyui-gfpgan[" not in readme
    from comfyui_gfpgan.jobs.ray_job import RAY_MISSING
    from comfyui_gfpgan.jobs.video_file import AV_MISSING

    assert 'pip install -e ".[video]"' in AV_MISSING and 'pip install -e ".[ray]"' in RAY_MISSING


# --- make-test-model ---------------------------------------------------------------------------------------------

def test_make_test_model_onto_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    target = tmp_path / "seeded.safetensors"
    preamble = ("import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
                "resource.setrlimit(resource.RLIMIT_FSIZE, (100000, 100000))")
    run = run_cli(["make-test-model", str(target)], preamble)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert run.stderr.strip() == f"error: could not write {target}: File too large"
    assert list(tmp_path.iterdir()) == []  # no truncated model, no temporary file
