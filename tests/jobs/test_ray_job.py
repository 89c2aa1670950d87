"""``restore --ray``: the restore job as a Ray Data job, on a local Ray of 2 CPUs (one per module)."""

import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from comfyui_gfpgan.jobs.cli import main
from comfyui_gfpgan.jobs.folder_job import JobError
from comfyui_gfpgan.jobs.ray_job import RaySettings, plan_workers

RUN_TIMEOUT_S = 300  # a hung Ray job fails the test instead of blocking CI; a run here takes ~20-40 s


@pytest.mark.parametrize("module", ["ray", "ray.data"])
def test_without_ray_the_error_says_how_to_install_it(tmp_path, monkeypatch, capsys, module):
    monkeypatch.setitem(sys.modules, module, None)  # what `import ray` / `import ray.data` meets when absent
    cv2.imwrite(str(tmp_path / "in.png"), np.zeros((8, 8, 3), np.uint8))
    out = tmp_path / "out"
    assert main(["restore", str(tmp_path / "in.png"), "-o", str(out), "--model", str(tmp_path / "absent.pth"),
                 "--detector", str(tmp_path / "absent.pth"), "--ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: --ray needs Ray Data: pip install "ray[data]>=2.60" (in a checkout of this pack: '
                          'pip install -e ".[ray]")') and len(err.splitlines()) == 1
    assert "absent.pth" not in err and not out.exists()  # said before anything is loaded or written


def test_worker_flags_need_ray_and_sane_values(tmp_path, capsys):
    common = ["restore", str(tmp_path), "-o", str(tmp_path / "out"), "--model", "m.pth", "--detector", "d.pth"]
    assert main([*common, "--workers", "2"]) == 2
    assert "size the workers of --ray" in capsys.readouterr().err
    assert main([*common, "--ray", "--workers", "0"]) == 2
    assert "--workers 0: at least 1" in capsys.readouterr().err
    assert main([*common, "--ray", "--device", "cuda:1"]) == 2
    assert "use cpu or cuda" in capsys.readouterr().err
    # `--ray DIR` would take an input folder as the address: said, not tried
    assert main(["restore", "--ray", str(tmp_path), "x.png", "-o", str(tmp_path / "out"), "--model", "m.pth"]) == 2
    assert "put --ray after the inputs" in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("nodes,settings,expected", [
    # (workers, CPUs, GPUs, device, torch threads) for a cluster's nodes
    ([{"CPU": 2}], {}, (1, 2, 0, "cpu", 2)),  # one worker per node, on all its CPUs
    ([{"CPU": 2}], {"workers": 2}, (2, 1, 0, "cpu", 1)),  # the most that fit both
    ([{"CPU": 2}], {"workers": 4}, (4, 0.5, 0, "cpu", 1)),
    ([{"CPU": 16}, {"CPU": 8}], {}, (2, 8, 0, "cpu", 8)),
    ([{"CPU": 16}, {"CPU": 8}], {"workers": 3}, (3, 8, 0, "cpu", 8)),  # two on the big node, one on the small
    ([{"CPU": 8, "GPU": 2}, {"CPU": 8, "GPU": 2}], {}, (4, 1, 1, "cuda", 1)),  # one per GPU
    ([{"CPU": 8, "GPU": 2}], {"worker_gpus": 0.5, "worker_cpus": 2}, (4, 2, 0.5, "cuda", 2)),
    ([{"CPU": 8, "GPU": 2}], {"device": "cpu"}, (1, 8, 0, "cpu", 8)),
])
def test_worker_plan(nodes, settings, expected):
    plan = plan_workers(RaySettings(**settings), nodes)
    assert (plan.workers, plan.cpus, plan.gpus, plan.device, plan.threads) == expected
    assert plan.room >= plan.workers


@pytest.mark.parametrize("nodes,settings,message", [
    ([{"CPU": 2}], {"device": "cuda"}, "need GPUs; this cluster has 0"),
    ([{"CPU": 2}], {"worker_gpus": 1}, "(use --device cpu for CPU workers)"),
    ([{"CPU": 2}], {"worker_cpus": 4}, "no node has room for a worker of 4 CPUs (the largest has 2 CPUs, 0 GPUs)"),
    ([{"CPU": 0.5, "GPU": 1}], {}, "no node has room for a worker of 1 CPU and 1 GPU"),
])
def test_worker_plan_refuses_what_could_never_start(nodes, settings, message):
    with pytest.raises(JobError, match=re.escape(message)):
        plan_workers(RaySettings(**settings), nodes)


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray with 2 CPUs and no GPU for this module (the CLI's --ray runs join it)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data", reason='Ray Data needs pandas and pyarrow: pip install -e ".[ray]"')
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def photo_folder(shared_dir, tmp_path_factory) -> Path:
    """Two photos with a face each, one without, one file that is no image, and a decompression bomb (once it
    failed the Ray job as a whole: "the Ray job failed: To change retry attempts...", naming no file)."""
    from factories import header_bomb

    folder = tmp_path_factory.mktemp("ray_in")
    header_bomb(folder / "bomb.png")
    shutil.copy(shared_dir / "images" / "astronaut.png", folder / "astronaut.png")
    shutil.copy(shared_dir / "images" / "grace_hopper.jpg", folder / "grace_hopper.jpg")
    cv2.imwrite(str(folder / "blank.png"), np.full((64, 80, 3), 90, np.uint8))
    (folder / "notes.png").write_text("not an image")
    return folder


BOMB = "3600 megapixels, over the 100 megapixel limit: not decoded (--max-megapixels)"


def _restore_args(photo_folder, out, small_model, retinaface_weights):
    return ["restore", str(photo_folder), "-o", str(out), "--model", small_model, "--detector", str(retinaface_weights)]


def _counts(stdout: str, out) -> str:
    """The summary line without its throughput, which differs from run to run."""
    return re.sub(r" \(\d+ images? in .*\)$", "", stdout.strip().replace(str(out), "OUT"))


def _file_lines(err: str) -> list[str]:
    """The per-file lines of the CLI's stderr (not Ray's log or a progress bar)."""
    lines = err.replace("\r", "\n").splitlines()
    return sorted(line for line in lines if line.startswith(("skipped ", "failed ", "/")) and ": " in line)


@pytest.fixture(scope="module")
def single_process_runs(photo_folder, small_model, retinaface_weights, tmp_path_factory):
    """The single-process CLI's run on ``photo_folder`` with N torch threads: (exit status, stdout, file lines, out)."""
    import torch

    runs = {}

    def run(threads: int):
        if threads not in runs:
            out = tmp_path_factory.mktemp(f"single_{threads}_threads")
            before = torch.get_num_threads()
            torch.set_num_threads(threads)  # as a worker reserving that many CPUs computes: float sums follow
            try:
                import contextlib
                import io

                stdout, stderr = io.StringIO(), io.StringIO()
                with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                    code = main(_restore_args(photo_folder, out, small_model, retinaface_weights))
            finally:
                torch.set_num_threads(before)
            runs[threads] = code, _counts(stdout.getvalue(), out), _file_lines(stderr.getvalue()), out
        return runs[threads]

    return run


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_write_what_the_single_process_cli_writes(workers, ray_address, photo_folder, small_model,
                                                           retinaface_weights, single_process_runs, tmp_path):
    out = tmp_path / "out"
    args = _restore_args(photo_folder, out, small_model, retinaface_weights)
    command = [sys.executable, "-m", "comfyui_gfpgan", *args, f"--ray={ray_address}", "--workers", str(workers)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=dict(os.environ))
    # on the 2-CPU Ray, one worker computes with 2 torch threads, two with 1 each
    threads = 2 // workers
    code, stdout, file_lines, expected = single_process_runs(threads)
    assert (run.returncode, _counts(run.stdout, out)) == (code, stdout), run.stderr[-3000:]
    assert code == 1 and stdout == "OUT: 2 restored, 1 unchanged, 2 unreadable"
    assert _file_lines(run.stderr) == file_lines == [
        f"{photo_folder / 'blank.png'}: no face found, written unchanged",
        f"skipped {photo_folder / 'bomb.png'}: {BOMB}",
        f"skipped {photo_folder / 'notes.png'}: not a readable image",
    ]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in expected.iterdir()) == [
        "astronaut.png", "blank.png", "grace_hopper.jpg"]
    for name in ("astronaut.png", "grace_hopper.jpg", "blank.png"):
        assert (out / name).read_bytes() == (expected / name).read_bytes(), name
    assert (out / "astronaut.png").read_bytes() != (photo_folder / "astronaut.png").read_bytes()
    assert f"ray: {workers} worker{'s' * (workers > 1)}, each reserving {threads} CPU{'s' * (threads > 1)}, on cpu " \
        f"with {threads} torch thread{'s' * (threads > 1)}" in run.stderr
    assert "Traceback" not in run.stderr


def _main_within_timeout(args: list[str]) -> int:
    """The CLI's exit status, run in this process (so on its Ray); a run that hangs fails the test."""
    result = []
    runner = threading.Thread(target=lambda: result.append(main(args)), daemon=True)
    runner.start()
    runner.join(RUN_TIMEOUT_S)
    assert result, "the Ray run did not finish"
    return result[0]


def test_existing_outputs_are_skipped_and_the_rest_restored(ray_address, photo_folder, small_model,
                                                             retinaface_weights, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "astronaut.png").write_bytes(b"an earlier run's output")
    args = [*_restore_args(photo_folder, out, small_model, retinaface_weights), "--ray"]  # joins this process's Ray
    assert _main_within_timeout(args) == 1
    captured = capsys.readouterr()
    assert f"skipped {photo_folder / 'astronaut.png'}: {out / 'astronaut.png'} exists (use --overwrite)" in captured.err
    assert f"skipped {photo_folder / 'notes.png'}: not a readable image" in captured.err
    assert f"skipped {photo_folder / 'bomb.png'}: {BOMB}" in captured.err and "Traceback" not in captured.err
    assert _counts(captured.out, out) == "OUT: 1 restored, 1 unchanged, 1 skipped, 2 unreadable"
    assert (out / "astronaut.png").read_bytes() == b"an earlier run's output"
    assert sorted(p.name for p in out.iterdir()) == ["astronaut.png", "blank.png", "grace_hopper.jpg"]
    import ray

    assert ray.is_initialized()  # a Ray the job did not start is left running


def test_a_model_the_workers_cannot_load_is_the_single_process_error(ray_address, photo_folder, retinaface_weights,
                                                                      tmp_path, capsys):
    args = _restore_args(photo_folder, tmp_path / "out", str(tmp_path / "absent.pth"), retinaface_weights)
    assert main(args) == 2
    single = capsys.readouterr().err.strip().splitlines()[-1]
    assert single == f"error: {tmp_path / 'absent.pth'}: no such file."
    assert _main_within_timeout([*args, "--ray"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == single and "Traceback" not in err


def test_an_address_where_no_cluster_answers_is_one_line_at_once(photo_folder, small_model, retinaface_weights,
                                                                  tmp_path):
    import socket
    import time

    from comfyui_gfpgan.jobs.folder_job import JobError
    from comfyui_gfpgan.jobs.ray_job import check_reachable

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = _restore_args(photo_folder, tmp_path / "out", small_model, retinaface_weights)
    started = time.monotonic()  # in a process of its own: this one's Ray would be used whatever the address
    run = subprocess.run([sys.executable, "-m", "comfyui_gfpgan", *args, f"--ray=127.0.0.1:{port}"],
                         capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=dict(os.environ))
    assert run.returncode == 2 and run.stderr.strip().splitlines()[-1].startswith(
        f"error: --ray 127.0.0.1:{port}: no Ray cluster answers at 127.0.0.1:{port} (Connection refused)")
    assert time.monotonic() - started < 30 and "Traceback" not in run.stderr  # Ray alone waits for minutes
    with pytest.raises(JobError, match="answers at 127.0.0.1:10001 "):  # a Ray client address's default port
        check_reachable("ray://127.0.0.1", timeout_s=1)
    check_reachable("auto")  # found by Ray itself, from the local session file
