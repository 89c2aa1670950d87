"""The restore job as a Ray Data job (``comfyui-gfpgan restore --ray``): the same ``FolderJob`` on many workers.

The driver plans which files to restore (``folder_job.plan_targets``) and hands the ``(input, output)`` path
pairs to Ray Data; a fixed pool of actors, each holding the models of one ``JobSpec`` (loaded once per actor),
restores batches of them with ``FolderJob.restore_files`` and writes the outputs itself, so only paths and
outcomes travel. Inputs, outputs and model files must be at the same paths on every node.

The pipeline has no Ray task stage (``from_items`` keeps the rows on the driver, the actors write), so the
actors may hold every CPU of a node: on 2 CPUs, two 1-CPU actors behind a read stage (``ray.data.range``),
whose tasks need a CPU of their own, had not finished after 90 s; behind ``from_items`` they finish.
"""

from __future__ import annotations

import dataclasses
import math
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from .folder_job import FileOutcome, FolderJob, JobError, JobSpec

RAY_MISSING = '--ray needs Ray Data: pip install "ray[data]>=2.60" (in a checkout of this pack: pip install -e ".[ray]")'
LOCAL = "local"  # ray.init's name for "start a new local Ray"
MAX_BATCH = 8  # files per actor call at most: small batches keep the workers evenly busy and the progress fine


@dataclass(frozen=True)
class RaySettings:
    """Where to run and how big the workers are; ``None`` is chosen from the cluster (see ``plan_workers``)."""

    address: str = LOCAL  # ray.init's address: "local" (a new local Ray), "auto", "HOST:6379"
    workers: int | None = None  # default: one per GPU where the workers get GPUs, else one per node
    worker_cpus: float | None = None  # CPUs each worker reserves and computes on (its torch threads)
    worker_gpus: float | None = None  # default: 1 where the cluster has GPUs (unless device is cpu), else 0
    device: str | None = None  # cpu | cuda | None (cuda where the workers get GPUs)

    def __post_init__(self) -> None:
        if self.address not in (LOCAL, "auto") and Path(self.address).exists():
            raise JobError(f"--ray took {self.address!r} as the cluster's address: put --ray after the inputs, "
                           "or write --ray=ADDRESS")
        if self.workers is not None and self.workers < 1:
            raise JobError(f"--workers {self.workers}: at least 1")
        if self.worker_cpus is not None and not self.worker_cpus > 0:
            raise JobError(f"--worker-cpus {self.worker_cpus}: more than 0")
        if self.worker_gpus is not None and not self.worker_gpus >= 0:
            raise JobError(f"--worker-gpus {self.worker_gpus}: 0 or more")
        if self.device not in (None, "cpu", "cuda"):
            raise JobError(f"--device {self.device} with --ray: use cpu or cuda (a worker uses the GPU Ray gives it)")
        if self.device == "cpu" and self.worker_gpus:
            raise JobError("--device cpu with --worker-gpus: CPU workers take no GPU")
        if self.device == "cuda" and self.worker_gpus == 0:
            raise JobError("--device cuda with --worker-gpus 0: CUDA workers need a GPU")


@dataclass(frozen=True)
class WorkerPlan:
    """The actor pool: how many, what each reserves, and the device and torch threads each computes with."""

    workers: int
    cpus: float
    gpus: float
    device: str
    threads: int
    room: int  # how many such workers the cluster has room for now


def _room(nodes: Sequence[dict[str, float]], cpus: float, gpus: float) -> int:
    """How many workers of ``cpus`` and ``gpus`` fit on ``nodes`` (each node's resources), one node each."""
    eps = 1e-9
    fits = 0
    for node in nodes:
        per_node = math.floor(node.get("CPU", 0) / cpus + eps) if cpus else math.inf
        if gpus:
            per_node = min(per_node, math.floor(node.get("GPU", 0) / gpus + eps))
        fits += 0 if per_node == math.inf else per_node
    return fits


def plan_workers(settings: RaySettings, nodes: Sequence[dict[str, float]]) -> WorkerPlan:
    """Size the actor pool for a cluster whose alive nodes have ``nodes`` resources ({"CPU": 8, "GPU": 1, ...}).

    GPU workers (the default where the cluster has GPUs): one GPU and one CPU each, one worker per GPU.
    CPU workers: one per node, each taking the CPUs of the smallest node; with ``workers`` given, the most
    CPUs each that still fit them all (2 workers on a 2-CPU machine: 1 CPU each). A worker computes with
    as many torch threads as whole CPUs it reserves (at least 1).
    """
    cluster_gpus = sum(node.get("GPU", 0) for node in nodes)
    gpus = settings.worker_gpus
    if gpus is None:
        gpus = 1.0 if settings.device == "cuda" or cluster_gpus >= 1 and settings.device != "cpu" else 0.0
    if gpus and cluster_gpus < gpus:
        raise JobError(f"--ray: workers of {gpus:g} GPU{'s' * (gpus != 1)} need GPUs; this cluster has "
                       f"{cluster_gpus:g}" + ("" if settings.device else " (use --device cpu for CPU workers)"))
    workers = settings.workers
    if workers is None:
        workers = max(1, _room(nodes, 0, gpus)) if gpus else max(1, sum(1 for n in nodes if n.get("CPU", 0) > 0))
    cpus = settings.worker_cpus
    if cpus is None:
        if gpus:
            cpus = 1.0
        else:  # the largest share that fits them all: some node's CPUs / k, whole where it is 1 or more
            shares = {share if share < 1 else math.floor(share)
                      for node in nodes for k in range(1, workers + 1) if (share := node.get("CPU", 0) / k) > 0}
            fitting = [share for share in shares if _room(nodes, share, 0) >= workers]
            cpus = max(fitting) if fitting else min(shares, default=1.0)
    room = _room(nodes, cpus, gpus)
    if room < 1:
        need = f"{cpus:g} CPU{'s' * (cpus != 1)}" + (f" and {gpus:g} GPU{'s' * (gpus != 1)}" if gpus else "")
        largest = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={})
        raise JobError(f"--ray: no node has room for a worker of {need} (the largest has "
                       f"{largest.get('CPU', 0):g} CPUs, {largest.get('GPU', 0):g} GPUs)")
    return WorkerPlan(workers, cpus, gpus, "cuda" if gpus else "cpu", max(1, math.floor(cpus + 1e-9)), room)


def import_ray():
    """``ray`` with Ray Data, or a one-line ``JobError`` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (needs pandas and pyarrow: the [data] extra)
    except ImportError as error:
        raise JobError(f"{RAY_MISSING} ({error})") from None
    return ray


class RestoreWorker:
    """A Ray Data actor: the models of ``spec`` loaded once; restores batches of ``input``/``output`` path rows."""

    def __init__(self, spec: JobSpec, threads: int):
        import torch

        from ..face_pipeline.detect import FaceModelError
        from ..model_files import ModelLoadError

        torch.set_num_threads(threads)  # its CPU reservation, whatever OMP_NUM_THREADS the node set
        self.job, self.load_error = None, ""
        try:
            self.job = FolderJob(spec)
        except (ModelLoadError, FaceModelError, JobError, ValueError, OSError) as error:
            # the CLI's one-line error (a missing or unreadable model file), not Ray's traceback of a dead actor
            self.load_error = str(error)
            return
        for note in self.job.notes:  # Ray forwards a worker's stderr to the driver, prefixed with the worker
            print(note, file=sys.stderr)

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        pairs = [(Path(source), Path(target)) for source, target in zip(batch["input"], batch["output"])]
        if self.job is None:  # the driver stops at the first of these rows, with the load error as its error
            outcomes = [FileOutcome(source, "failed", self.load_error) for source, _ in pairs]
        else:
            outcomes = self._restore(pairs)
        rows = {
            "path": [str(outcome.path) for outcome in outcomes],
            "status": [outcome.status for outcome in outcomes],
            "message": [outcome.message for outcome in outcomes],
            "faces": [outcome.faces for outcome in outcomes],
            "load_error": [self.job is None] * len(outcomes),
        }
        return {key: np.array(values, dtype=object if isinstance(values[0], str) else None)
                for key, values in rows.items()}

    def _restore(self, pairs: list[tuple[Path, Path]]) -> list[FileOutcome]:
        """The batch's outcomes; where the batch raises (a bug, not a file's failure), each file again alone, so
        the error names its file instead of failing the whole Ray job with Ray's retry text."""
        from ..face_pipeline.errors import one_line

        try:
            return list(self.job.restore_files(pairs))
        except Exception as error:
            if len(pairs) == 1:
                return [FileOutcome(pairs[0][0], "failed", f"{type(error).__name__}: {one_line(error)}")]
        return [outcome for pair in pairs for outcome in self._restore([pair])]


def _innermost_cause(error: BaseException) -> str:
    """The innermost cause of a Ray error, on one line (Ray's own text carries the worker's traceback)."""
    while getattr(error, "cause", None) is not None and error.cause is not error:
        error = error.cause
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A one-line ``JobError`` where nothing listens at a ``HOST:PORT`` (or ``ray://HOST:PORT``) address: Ray
    itself waits on such an address for minutes (over 5 on Ray 2.60 here) before it gives up with a traceback."""
    if address in (LOCAL, "auto"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        host, port = address.removeprefix("ray://"), "10001" if address.startswith("ray://") else "6379"
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise JobError(f"--ray {address}: no Ray cluster answers at {host}:{port} ({error.strerror or error}); "
                       "start one there (ray start --head) or give its address") from None


def restore_on_ray(spec: JobSpec, pairs: Sequence[tuple[Path, Path]], settings: RaySettings) -> Iterator[FileOutcome]:
    """Restore ``pairs`` on Ray: one ``FileOutcome`` per pair, in the order they finish.

    Connects to ``settings.address`` (or starts a local Ray; a Ray already initialized in this process is
    used as it is), sizes the pool with ``plan_workers`` and shuts down only what it started.
    """
    if not pairs:
        return
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        check_reachable(settings.address)
        ray.init(address=settings.address)
    try:
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        plan = plan_workers(settings, nodes)
        print(f"ray: {plan.workers} worker{'s' * (plan.workers != 1)}, each reserving {plan.cpus:g} "
              f"CPU{'s' * (plan.cpus != 1)}" + (f" and {plan.gpus:g} GPU{'s' * (plan.gpus != 1)}" if plan.gpus else "")
              + f", on {plan.device} with {plan.threads} torch thread{'s' * (plan.threads != 1)}", file=sys.stderr)
        if plan.room < plan.workers:
            print(f"note: the cluster has room for {plan.room} of the {plan.workers} workers now; the others "
                  "start when resources free up", file=sys.stderr)
        rows = [{"input": str(source), "output": str(target)} for source, target in pairs]
        batch_size = max(1, min(MAX_BATCH, math.ceil(len(rows) / plan.workers)))
        blocks = math.ceil(len(rows) / batch_size)  # a block a batch, so batches spread over the workers
        dataset = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
            RestoreWorker,
            fn_constructor_args=(dataclasses.replace(spec, device=plan.device), plan.threads),
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=plan.workers),
            num_cpus=plan.cpus,
            num_gpus=plan.gpus or None,
        )
        try:
            for row in dataset.iter_rows():
                if row["load_error"]:
                    raise JobError(row["message"])
                yield FileOutcome(Path(row["path"]), str(row["status"]), str(row["message"]), int(row["faces"]))
        except ray.exceptions.RayError as error:
            raise JobError(f"the Ray job failed: {_innermost_cause(error)}") from None
    finally:
        if started:
            ray.shutdown()
