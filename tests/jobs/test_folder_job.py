"""The restore job over files: streamed outputs, failures, bounded memory, resuming an interrupted run."""

import shutil
import weakref
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from comfyui_gfpgan.jobs import folder_job
from comfyui_gfpgan.face_pipeline.errors import FaceInputError
from comfyui_gfpgan.face_pipeline.pipeline import RestoreSettings, restore_faces_in_images
from comfyui_gfpgan.face_restorers import as_face_restorer
from comfyui_gfpgan.jobs.folder_job import FolderJob, JobSpec, plan_targets, read_image, write_image

from factories import SeededNoiseRestorer, seeded_clean_network

SMALL = dict(out_size=128, num_style_feat=64, channel_multiplier=1, num_mlp=2, narrow=0.25)  # ~0.5 s a face on CPU


@pytest.fixture(scope="module")
def model_128(tmp_path_factory) -> str:
    """A seeded GFPGANv1Clean with 128 px crops, saved as a file the job loads."""
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("model_128") / "gfpgan-128-seeded.safetensors"
    save_file({k: v.contiguous() for k, v in seeded_clean_network(seed=3, **SMALL).state_dict().items()}, str(path))
    return str(path)


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, shared_dir) -> Path:
    """The shared photos and the awkward inputs a folder holds: no face, unreadable, gray, alpha, 16-bit, tiny,
    and a frame with two faces."""
    folder = tmp_path_factory.mktemp("mixed")
    astronaut = cv2.imread(str(shared_dir / "images" / "astronaut.png"))
    grace = cv2.imread(str(shared_dir / "images" / "grace_hopper.jpg"))
    shutil.copy(shared_dir / "images" / "astronaut.png", folder / "a_astronaut.png")
    shutil.copy(shared_dir / "images" / "grace_hopper.jpg", folder / "b_grace_hopper.jpg")
    cv2.imwrite(str(folder / "c_blank.png"), np.full((64, 80, 3), 90, np.uint8))
    (folder / "d_notes.png").write_text("not an image")
    cv2.imwrite(str(folder / "e_gray.png"), cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY))
    alpha = np.linspace(0, 255, grace.shape[1], dtype=np.uint8)[None, :, None].repeat(grace.shape[0], 0)
    cv2.imwrite(str(folder / "f_alpha.png"), np.concatenate([grace, alpha], axis=2))
    cv2.imwrite(str(folder / "g_deep.png"), astronaut.astype(np.uint16) * 257 + 100)
    cv2.imwrite(str(folder / "h_tiny.png"), np.full((8, 8, 3), 200, np.uint8))
    pair = np.full((600, 1150, 3), 128, np.uint8)
    pair[:512, :512], pair[:, 600:1112] = astronaut, grace
    cv2.imwrite(str(folder / "i_pair.png"), pair)
    return folder


EXPECTED = {"a_astronaut.png": ("restored", 1), "b_grace_hopper.jpg": ("restored", 1), "c_blank.png": ("unchanged", 0),
            "d_notes.png": ("unreadable", 0), "e_gray.png": ("restored", 1), "f_alpha.png": ("restored", 1),
            "g_deep.png": ("restored", 1), "h_tiny.png": ("unchanged", 0), "i_pair.png": ("restored", 2)}


def restore_alone(job: FolderJob, path: Path, target: Path) -> None:
    """The per-image path: one image through restore_faces_in_images, written as the job writes."""
    try:
        image, depth = read_image(path)
    except folder_job.UnreadableImage:
        return
    result = restore_faces_in_images(torch.from_numpy(image).permute(2, 0, 1)[None], job.restorer, job.detector,
                                     job.parser, detect=job.spec.detect, restore=job.restore, paste=job.spec.paste)
    if result.faces.faces:
        write_image(target, result.images[0].permute(1, 2, 0).numpy(), depth)
    else:
        shutil.copyfile(path, target)


def stream_and_compare(job: FolderJob, folder: Path, tmp_path: Path, names=None) -> tuple[list, list[str]]:
    """Restore ``folder`` (or its files ``names``) with the job (2 I/O threads) and each file alone; the outcomes
    and the names whose files differ."""
    streamed, alone = tmp_path / "streamed", tmp_path / "alone"
    streamed.mkdir()
    alone.mkdir()
    inputs = sorted(path for path in folder.iterdir() if names is None or path.name in names)
    outcomes = list(job.restore_files([(path, streamed / path.name) for path in inputs], jobs=2))
    for path in inputs:
        restore_alone(job, path, alone / path.name)
    assert sorted(p.name for p in streamed.iterdir()) == sorted(p.name for p in alone.iterdir())
    differing = [p.name for p in alone.iterdir() if (streamed / p.name).read_bytes() != p.read_bytes()]
    return outcomes, differing


def test_streamed_files_are_byte_identical_to_each_image_restored_alone(mixed_folder, model_128, retinaface_weights,
                                                                        tmp_path):
    spec = JobSpec(model=model_128, detector=str(retinaface_weights), dtype="fp32",
                   restore=RestoreSettings(noise="seeded", seed=7, chunk_size=3))
    job = FolderJob(spec)
    job.restorer = as_face_restorer(SeededNoiseRestorer())  # each face's output depends on its seed alone
    outcomes, differing = stream_and_compare(job, mixed_folder, tmp_path)
    assert {o.path.name: (o.status, o.faces) for o in outcomes} == EXPECTED and len(outcomes) == len(EXPECTED)
    assert differing == []
    assert job.restorer.network.batches[:3] == [3, 3, 1]  # the stream's calls: 7 faces, 3 at a time
    # the seeds matter: another seed writes other faces
    job.restore = RestoreSettings(noise="seeded", seed=8, chunk_size=3)
    list(job.restore_files([(mixed_folder / "a_astronaut.png", tmp_path / "seed8.png")]))
    assert (tmp_path / "seed8.png").read_bytes() != (tmp_path / "streamed" / "a_astronaut.png").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("chunk", [1, 3])
def test_the_seeded_network_streamed_writes_what_it_writes_alone(chunk, mixed_folder, model_128, retinaface_weights,
                                                                 tmp_path):
    """One face per call (the CPU default): byte-identical files. Batched across images (3 faces a call) a real
    network's fp32 convolutions sum in another order for another batch size (outputs ~1e-6 apart, see
    test_stream), which flips the rounding of a few values: measured, one level on 1e-5 of the 8-bit PNG
    values and 8e-4 of the 16-bit ones; the JPEG, re-encoded lossily, up to 5 levels on 7e-4 of its values."""
    spec = JobSpec(model=model_128, detector=str(retinaface_weights), dtype="fp32",
                   restore=RestoreSettings(noise="seeded", seed=7, chunk_size=chunk))
    names = {"a_astronaut.png", "b_grace_hopper.jpg", "c_blank.png", "g_deep.png", "h_tiny.png", "i_pair.png"}
    outcomes, differing = stream_and_compare(FolderJob(spec), mixed_folder, tmp_path, names)  # 5 faces: 3 + 2
    assert {o.path.name: (o.status, o.faces) for o in outcomes} == {name: EXPECTED[name] for name in names}
    if chunk == 1:
        assert differing == []
        return
    assert not {"c_blank.png", "h_tiny.png"} & set(differing)  # no face, no network: copied as they are
    for name in differing:
        streamed, alone = (cv2.imread(str(tmp_path / side / name), cv2.IMREAD_UNCHANGED).astype(np.int64)
                           for side in ("streamed", "alone"))
        changed = streamed != alone
        lossy = name.endswith(".jpg")
        assert np.abs(streamed - alone).max() <= (8 if lossy else 1), name
        assert changed.mean() <= (5e-3 if lossy else 2e-3), name


class RefusesMagentaFaces(SeededNoiseRestorer):
    """Raises, like a network given an impossible input, for any call holding a face with a magenta patch."""

    def forward(self, x, fidelity=1.0, noise=None):
        if bool(((x[:, 0] > 0.9) & (x[:, 1] < -0.9) & (x[:, 2] > 0.9)).any()):  # (x in [-1, 1])
            self.batches.append(x.shape[0])
            raise FaceInputError("a poisoned face")
        return super().forward(x, fidelity, noise)


def test_a_failing_file_is_its_outcome_and_the_rest_complete(tmp_path, shared_dir, model_128, retinaface_weights):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    astronaut = cv2.imread(str(shared_dir / "images" / "astronaut.png"))
    shutil.copy(shared_dir / "images" / "astronaut.png", inputs / "a_astronaut.png")
    poisoned = astronaut.copy()
    poisoned[62:74, 215:235] = (255, 0, 255)  # on the forehead: found as a face, refused by the network
    cv2.imwrite(str(inputs / "b_poisoned.png"), poisoned)
    shutil.copy(shared_dir / "images" / "grace_hopper.jpg", inputs / "c_grace_hopper.jpg")
    (inputs / "d_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    cv2.imwrite(str(inputs / "e_blocked.png"), cv2.flip(astronaut, 1))
    (out / "e_blocked.png").mkdir()  # a folder where its output should go: the write fails
    cv2.imwrite(str(inputs / "f_mirrored.png"), cv2.flip(astronaut, 1))
    spec = JobSpec(model=model_128, detector=str(retinaface_weights), dtype="fp32",
                   restore=RestoreSettings(noise="seeded", chunk_size=3))
    job = FolderJob(spec)
    job.restorer = as_face_restorer(RefusesMagentaFaces())
    names = sorted(p.name for p in inputs.iterdir())
    outcomes = {o.path.name: o for o in job.restore_files([(inputs / name, out / name) for name in names], jobs=2)}
    assert {name: o.status for name, o in outcomes.items()} == {
        "a_astronaut.png": "restored", "b_poisoned.png": "failed", "c_grace_hopper.jpg": "restored",
        "d_corrupt.png": "unreadable", "e_blocked.png": "failed", "f_mirrored.png": "restored"}
    assert outcomes["b_poisoned.png"].message == "a poisoned face"
    assert outcomes["e_blocked.png"].message == f"could not write {out / 'e_blocked.png'}: Is a directory"
    assert out.joinpath("e_blocked.png").is_dir()
    assert sorted(p.name for p in out.iterdir()) == ["a_astronaut.png", "c_grace_hopper.jpg", "e_blocked.png",
                                                     "f_mirrored.png"]
    # the refused call held other images' faces too: they were restored on their own, as they would be alone
    assert len(job.restorer.network.batches) > 2 and job.restorer.network.batches[0] > 1
    for name in ("a_astronaut.png", "c_grace_hopper.jpg", "f_mirrored.png"):
        restore_alone(job, inputs / name, tmp_path / name)
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name


def folders_and_face(tmp_path: Path, astronaut_rgb: np.ndarray) -> tuple[Path, Path, np.ndarray]:
    """Empty input and output folders, and the astronaut's face as a 256 px BGR image to write into the first."""
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    return inputs, out, cv2.resize(np.ascontiguousarray(astronaut_rgb[:, :, ::-1]), (256, 256), interpolation=cv2.INTER_AREA)


def test_images_in_flight_stay_few_whatever_the_number_of_inputs(tmp_path, astronaut_rgb, model_128,
                                                                 retinaface_weights, monkeypatch):
    inputs, out, face = folders_and_face(tmp_path, astronaut_rgb)
    rng = np.random.default_rng(0)
    count = 60
    for index in range(count):  # every third holds a face; the rest are noise, which the detector finds nothing in
        image = np.roll(face, index // 3, axis=1) if index % 3 == 0 else rng.integers(0, 255, (96, 128, 3), np.uint8)
        cv2.imwrite(str(inputs / f"{index:03d}.png"), image)
    alive, peak = [0], [0]

    def release():
        alive[0] -= 1

    def read_and_count(path, **options):  # every decoded image, counted until the last reference to its pixels goes
        read = real_read(path, **options)
        alive[0] += 1
        peak[0] = max(peak[0], alive[0])
        weakref.finalize(read[0], release)
        return read

    real_read = folder_job.read_image
    monkeypatch.setattr(folder_job, "read_image", read_and_count)
    jobs, chunk = 2, 4
    spec = JobSpec(model=model_128, detector=str(retinaface_weights), restore=RestoreSettings(noise="seeded",
                                                                                                 chunk_size=chunk))
    job = FolderJob(spec)
    job.restorer = as_face_restorer(SeededNoiseRestorer())
    outcomes = list(job.restore_files([(path, out / path.name) for path in sorted(inputs.iterdir())], jobs=jobs))
    assert len(outcomes) == count and [o.status for o in outcomes].count("restored") == count // 3
    assert job.restorer.network.batches == [chunk] * (count // 3 // chunk)
    # the decoders run far ahead of detection here, so only the bounded queues keep the rest on disk
    assert peak[0] <= 4 * jobs + 2 * chunk + 2, peak[0]
    assert alive[0] == 0
    with pytest.raises(folder_job.JobError, match=r"--jobs must be a whole number in 1\.\.256, got 0"):
        job.restore_files([], jobs=0)


def test_an_interrupted_run_leaves_no_partial_file_and_resumes(tmp_path, astronaut_rgb, model_128,
                                                               retinaface_weights, monkeypatch):
    inputs, out, face = folders_and_face(tmp_path, astronaut_rgb)
    for index in range(8):
        cv2.imwrite(str(inputs / f"{index}.png"), np.roll(face, 5 * index, axis=0))
    spec = JobSpec(model=model_128, detector=str(retinaface_weights), restore=RestoreSettings(noise="seeded"))
    job = FolderJob(spec)
    job.restorer = as_face_restorer(SeededNoiseRestorer())
    real_write_bytes, writes = Path.write_bytes, []

    def interrupted_third_write(self, data):  # Ctrl-C halfway through writing the third output
        writes.append(self.name)
        if len(writes) == 3:
            real_write_bytes(self, bytes(memoryview(data))[: len(data) // 2])
            raise KeyboardInterrupt
        return real_write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", interrupted_third_write)
    files = sorted(inputs.iterdir())
    named = [(path, Path(path.name)) for path in files]
    todo, _ = plan_targets(named, out, overwrite=False)
    with pytest.raises(KeyboardInterrupt):
        list(job.restore_files(todo, jobs=2))
    assert writes[2].endswith(".partial")  # it was writing under a temporary name ...
    written = sorted(p.name for p in out.iterdir())
    assert 2 <= len(written) < len(files) and all(name.endswith(".png") for name in written)  # ... now gone
    monkeypatch.setattr(Path, "write_bytes", real_write_bytes)
    todo, skipped = plan_targets(named, out, overwrite=False)  # the next run skips what exists
    assert sorted(o.path.name for o in skipped) == written and len(todo) == len(files) - len(written)
    assert [o.status for o in job.restore_files(todo, jobs=2)] == ["restored"] * len(todo)
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in files]
    for path in files:  # every output whole, and what the image gives alone
        restore_alone(job, path, tmp_path / path.name)
        assert (tmp_path / path.name).read_bytes() == (out / path.name).read_bytes(), path.name
