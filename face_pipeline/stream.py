"""Restore a long stream of images, keeping the device busy: the staged form of ``restore_faces_in_images``.

Four stages, joined by bounded queues (``queue.Queue(maxsize=workers)``), so only a few images are held at
once however many come in:

1. load (``workers`` threads): ``load(source)`` decodes one image into a ``Frame``;
2. detect and align (the calling thread, on the device): ``_frame_chunks`` over the loaded images already
   waiting (up to ``detect_batch``), those of one size in one detector call; each image gets the faces
   ``restore_faces_in_images`` finds in it alone (to the rounding of a batch, where several share a call);
3. restore (the calling thread): the aligned crops of several images wait together until there are
   ``chunk_size`` faces for one network call (``restore_crops``); each face is seeded ``seed`` + its
   index within its own image, as a run over that image alone seeds it;
4. paste and save (``workers`` threads): ``_paste_chunk`` into the frame, then ``save(result)``.

Threads, not processes: decoding (cv2) and torch release the GIL. Results come out in completion order.
An image that fails in any stage (``ITEM_ERRORS``) is saved with its ``error`` and the rest go on; any
other exception, or one raised by ``load`` or ``save`` (a KeyboardInterrupt), stops the stream and is
raised to the caller once the workers have finished what they hold.
"""

from __future__ import annotations

import dataclasses
import queue
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Generic, Iterable, Iterator, TypeVar

import torch

from ..face_restorers import FaceRestorer, as_face_restorer
from .aligned import aligned_network_crops, aligned_results
from .detect import FaceDetector
from .errors import FaceInputError
from .faces import FaceBatch, offset_faces
from .pipeline import DetectSettings, PasteSettings, RestoreSettings, _FrameChunk, _frame_chunks, _paste_chunk, validate_images
from .restore import default_chunk_size, restore_crops

S = TypeVar("S")
R = TypeVar("R")

ITEM_ERRORS = (FaceInputError, OSError, MemoryError, torch.cuda.OutOfMemoryError)
"""Errors about one image (or one too big for the device): that image fails, the others go on. (torch's CPU
allocator reports running out of memory as a plain RuntimeError: ``item_error`` turns it into a MemoryError.)"""


def item_error(error: Exception) -> Exception:
    """``error`` where it is about one image (``ITEM_ERRORS``, or torch's CPU allocator out of memory, as a
    ``MemoryError``); any other error is raised again: a bug stops the stream."""
    if isinstance(error, ITEM_ERRORS):
        return error
    if isinstance(error, RuntimeError) and "can't allocate memory" in str(error):
        size = re.search(r"allocate (\d+) bytes", str(error))
        return MemoryError(f"out of memory (tried to allocate {int(size[1]) / 2**30:.1f} GiB)" if size else
                           "out of memory")
    raise error

_POLL = 0.05  # s: how often a waiting stage looks for results to hand on, or for the stop signal


@dataclass
class Frame:
    """One loaded image: ``pixels`` ``[1,C,H,W]`` float 0..1 on the CPU (C = 1, 3 or 4); ``meta`` goes to ``save``
    untouched (e.g. the file's bit depth)."""

    pixels: torch.Tensor
    meta: object = None


@dataclass
class StreamResult(Generic[S]):
    """What became of one source, as ``save`` gets it."""

    source: S
    frame: Frame | None = None  # None: ``load`` found no image there
    image: torch.Tensor | None = None  # [1,C,H,W] the restored frame; None where no face was restored
    faces: int = 0  # faces restored
    error: Exception | None = None  # why it failed (one of ITEM_ERRORS), in whichever stage


@dataclass(eq=False)
class _Item(Generic[S]):
    result: StreamResult[S]
    chunk: _FrameChunk | None = None  # its frame on the device and aligned faces (not with aligned=True)
    crops: torch.Tensor | None = None  # [n,3,S,S] its faces as the network takes them, until all are restored
    restored: list[torch.Tensor | None] = field(default_factory=list)
    waiting: int = 0  # faces not restored yet


class _Failure:
    """An exception raised in a worker thread, carried to the calling thread to be raised there."""

    def __init__(self, error: BaseException):
        self.error = error


_END = object()  # a loader has no more sources / a saver may stop


def restore_stream(
    sources: Iterable[S],
    load: Callable[[S], Frame | None],
    save: Callable[[StreamResult[S]], R],
    restorer: FaceRestorer | torch.nn.Module,
    detector: FaceDetector | None,
    parser=None,
    *,
    detect: DetectSettings = DetectSettings(),
    restore: RestoreSettings = RestoreSettings(),
    paste: PasteSettings = PasteSettings(),
    aligned: bool = False,
    workers: int = 2,
    detect_batch: int | None = None,
) -> Iterator[R]:
    """``save(result)`` for every source, each restored as ``restore_faces_in_images`` restores it alone.

    ``load(source)`` (in a worker; None: no image) and ``save`` (in a worker) run ``workers`` at a time;
    detection and the network run in the calling thread as it iterates. ``aligned=True`` takes each
    image as one aligned face crop (the ``--aligned`` path: ``paste.blend`` then mixes in crop space).
    ``detect_batch`` loaded images at most, those already waiting, share a detector call (None: ``workers``
    on CUDA, 1 on the CPU, as ``default_detect_batch``). Yields what ``save`` returns, in completion order;
    at most about 4 * ``workers`` + ``detect_batch`` + 2 * faces per network call images are held at once.
    Closing the iterator stops the workers (they finish the image they hold).
    """
    if not isinstance(workers, int) or workers < 1:
        raise FaceInputError(f"workers must be a whole number >= 1, got {workers!r}")
    check_detect_batch(detect_batch)
    if not aligned and detector is None:
        raise FaceInputError("a face detector is needed (or aligned=True for pre-aligned face crops)")
    if paste.mask == "parsing" and parser is None:
        raise FaceInputError("mask='parsing' needs a face parser model")
    if detect_batch is None:
        detect_batch = 1 if aligned else default_detect_batch(detector.device, workers)
    stream = _Stream(sources, load, save, as_face_restorer(restorer), detector, parser, detect, restore, paste,
                     aligned, workers, detect_batch)
    return stream.run()


def check_detect_batch(detect_batch: int | None) -> None:
    """FaceInputError unless ``detect_batch`` is None or a whole number >= 1."""
    if detect_batch is not None and (isinstance(detect_batch, bool) or not isinstance(detect_batch, int) or detect_batch < 1):
        raise FaceInputError(f"detect_batch must be a whole number >= 1 (or None), got {detect_batch!r}")


def default_detect_batch(device: torch.device, workers: int) -> int:
    """Images per detector call: on CUDA as many as the ``workers`` load at once (not measured: faces there
    share network calls already, which round otherwise too). On the CPU one, so that files stay byte-identical
    to images restored alone: a shared call rounds otherwise (oneDNN's batched convolutions: features ~5e-6
    apart; 256 px frames, 4e-5 of the 8-bit output values one level off) and is no faster: RetinaFace
    mobilenet0.25 on 2 cores, ms a frame alone -> 2 a call -> 4 a call: 1024 px 39-56 -> 55-60 -> 69-75,
    2048 px 146-167 -> 172-186 -> 177-188 (2026-12-06, the stem's strips per frame), against seconds to
    restore a face."""
    return workers if device.type == "cuda" else 1


class _Stream(Generic[S, R]):
    def __init__(self, sources, load, save, restorer, detector, parser, detect, restore, paste, aligned, workers,
                 detect_batch):
        self.load, self.save, self.restorer, self.detector, self.parser = load, save, restorer, detector, parser
        self.restore, self.paste, self.aligned, self.workers = restore, paste, aligned, workers
        self.detect_batch = detect_batch  # loaded images per detector call at most
        # Images are independent: landmark smoothing (a video's frames following each other) must not chain the
        # images that share a detector call, and an image alone, with no frame before it, is never smoothed.
        self.detect = dataclasses.replace(detect, smoothing=0.0)
        self.batch = restore.chunk_size or default_chunk_size(restorer.device)  # faces per network call
        self.sources, self.sources_lock = iter(sources), threading.Lock()
        self.loaded: queue.Queue = queue.Queue(maxsize=workers)  # loader -> calling thread
        self.finished: queue.Queue = queue.Queue(maxsize=workers)  # calling thread -> saver
        self.results: queue.Queue = queue.Queue()  # saver -> calling thread: what save returned (small), failures
        self.stop = threading.Event()
        self.pending: deque[tuple[_Item, int]] = deque()  # (image, face index) waiting for the network
        self.outstanding = 0  # images handed to the savers whose result has not come back

    # --- the calling thread ---------------------------------------------------------------------------

    def run(self) -> Iterator[R]:
        loaders, savers = self._start_threads()
        try:
            running = len(loaders)
            while running:
                loaded = yield from self._next_loaded()
                items = [value for value in loaded if value is not _END]
                running -= len(loaded) - len(items)
                yield from self._take_in(items)
                del loaded, items  # hold no image while waiting for the next
                yield from self._drain()
            while self.pending:
                yield from self._restore_next_batch()
            for _ in savers:
                yield from self._put(self.finished, _END)
            while self.outstanding:
                yield from self._drain(wait=True)
        finally:
            self.stop.set()
            for thread in loaders + savers:
                thread.join()

    def _start_threads(self) -> tuple[list[threading.Thread], list[threading.Thread]]:
        """A loader and a saver per worker; where the system starts fewer threads (a process limit), the stream
        runs with the pairs that started, and fails in one line only if none did."""
        loaders, savers = [], []
        try:
            for _ in range(self.workers):
                loader = threading.Thread(target=self._load_loop, daemon=True)
                saver = threading.Thread(target=self._save_loop, daemon=True)
                saver.start()  # (the saver first: a loader alone would take sources that no saver writes)
                savers.append(saver)
                loader.start()
                loaders.append(loader)
        except RuntimeError as error:  # "can't start new thread"
            if not loaders:
                self.stop.set()
                for thread in savers:
                    thread.join()
                raise FaceInputError(f"could not start the stream's threads ({error}); the system's limit on "
                                     "threads is reached") from None
        return loaders, savers

    def _take_in(self, items: list[_Item]) -> Iterator[R]:
        """Detect and align loaded images, those that can share a detector call in one; queue their faces for
        the network, or hand them on."""
        calls: dict[object, list[_Item]] = {}
        for item in items:
            if item.result.error is None and item.result.frame is not None:
                key = self._call_key(item)
                calls.setdefault(item if key is None else key, []).append(item)
        for group in calls.values():
            self._find_faces(group)
        for item in items:
            if item.waiting == 0:
                yield from self._hand_on(item)
                continue
            self.pending.extend((item, index) for index in range(item.waiting))
            while len(self.pending) >= self.batch:
                yield from self._restore_next_batch()

    def _call_key(self, item: _Item) -> tuple | None:
        """What images must share to be detected in one call: their frames' shape and dtype (``find_faces`` takes
        frames of one size, stacked). None for an image detected on its own: an aligned crop, or pixels that
        ``validate_images`` refuses (its error becomes that image's when it is detected)."""
        pixels = item.result.frame.pixels
        if self.aligned:
            return None
        try:
            validate_images(pixels)
        except FaceInputError:
            return None
        return tuple(pixels.shape), pixels.dtype

    def _find_faces(self, items: list[_Item]) -> None:
        """Find the faces of ``items`` in one call; if it fails, each image again on its own, so that only a bad
        image fails and the others get what they would alone."""
        if len(items) > 1:
            try:
                self._find_faces_together(items)
                return
            except Exception:  # (each one again below, once this block has let go of the failed call's tensors)
                pass
        for item in items:
            try:
                self._find_faces_together([item])
            except Exception as error:
                self._fail(item, item_error(error))

    def _find_faces_together(self, items: list[_Item]) -> None:
        """Detect and align the faces of ``items`` (one ``_call_key``) in one detector call, or take each aligned
        crop as its face; each image keeps its own frame and faces (``image_index`` 0)."""
        for item in items:
            validate_images(item.result.frame.pixels)
        if self.aligned:
            found = [aligned_network_crops(self.restorer, item.result.frame.pixels) for item in items]
        else:
            device = self.restorer.device
            frames = [item.result.frame.pixels.to(device, torch.float32) for item in items]  # (on the CPU: no copy)
            chunk = next(_frame_chunks(torch.cat(frames) if len(frames) > 1 else frames[0], self.detector,
                                       self.detect, self.restorer.crop_size, len(frames), device))
            found = []
            for index, (item, frame) in enumerate(zip(items, frames)):
                mine = chunk.faces.faces_in_image(index)
                faces = FaceBatch(offset_faces([chunk.faces.faces[i] for i in mine], -index),
                                  chunk.faces.image_sizes[index : index + 1], chunk.faces.crop_size)
                # (the crops are held once: in item.crops, until restored)
                empty = chunk.crops.new_empty((0, *chunk.crops.shape[1:]))
                item.chunk = _FrameChunk(0, frame, faces, empty, [0] if index in chunk.skipped else [], faces.faces)
                found.append(chunk.crops[mine])
        for item, crops in zip(items, found):
            item.crops, item.restored, item.waiting = crops, [None] * len(crops), len(crops)

    def _restore_next_batch(self) -> Iterator[R]:
        """One network call over the next ``batch`` waiting faces (of one image or several)."""
        entries = [self.pending.popleft() for _ in range(min(self.batch, len(self.pending)))]
        items = list(dict.fromkeys(item for item, _ in entries))
        try:
            self._restore(entries)
        except Exception as error:
            error = item_error(error)
            if len(items) == 1:
                self._fail(items[0], error)
            else:  # find out whose face it was: each image's faces again, on their own
                for item in items:
                    try:
                        self._restore([entry for entry in entries if entry[0] is item])
                    except Exception as error:
                        self._fail(item, item_error(error))
        for item in items:
            if item.waiting == 0 or item.result.error is not None:
                yield from self._hand_on(item)

    def _restore(self, entries: list[tuple[_Item, int]]) -> None:
        settings = self.restore
        crops = torch.stack([item.crops[index] for item, index in entries])
        restored = restore_crops(
            self.restorer, crops, fidelity=settings.fidelity, noise=settings.noise,
            seeds=[settings.seed + index for _, index in entries], chunk_size=self.batch, dtype=settings.dtype,
            blend=self.paste.blend if self.aligned else 1.0,  # (full frames blend in the paste)
        )
        for (item, index), face in zip(entries, restored):
            item.restored[index] = face
            item.waiting -= 1

    def _fail(self, item: _Item, error: Exception) -> None:
        if isinstance(error, torch.cuda.OutOfMemoryError):
            torch.cuda.empty_cache()
        item.result.error = error.with_traceback(None)  # (a traceback would keep the image alive)
        item.waiting, item.crops = 0, None
        if any(waiting is item for waiting, _ in self.pending):
            self.pending = deque(entry for entry in self.pending if entry[0] is not item)

    def _hand_on(self, item: _Item) -> Iterator[R]:
        item.crops = None
        self.outstanding += 1
        yield from self._put(self.finished, item)

    def _put(self, target: queue.Queue, value) -> Iterator[R]:
        while True:
            try:
                target.put(value, timeout=_POLL)
                return
            except queue.Full:
                yield from self._drain()

    def _next_loaded(self) -> Iterator[R]:
        """The next loaded images (or ``_END`` marks): one, waited for, then up to ``detect_batch`` in all of
        those already waiting (never waiting for more)."""
        while True:
            try:
                values = [self.loaded.get(timeout=_POLL)]
                break
            except queue.Empty:
                yield from self._drain()
        while len(values) < self.detect_batch:
            try:
                values.append(self.loaded.get_nowait())
            except queue.Empty:
                break
        for value in values:
            if isinstance(value, _Failure):
                raise value.error
        return values

    def _drain(self, wait: bool = False) -> Iterator[R]:
        """Yield the results that came back (waiting up to ``_POLL`` for one if ``wait``); raise a worker's failure."""
        while True:
            try:
                value = self.results.get(timeout=_POLL) if wait else self.results.get_nowait()
            except queue.Empty:
                return
            if isinstance(value, _Failure):
                raise value.error
            self.outstanding -= 1
            wait = False
            yield value

    # --- the worker threads ---------------------------------------------------------------------------

    def _offer(self, target: queue.Queue, value) -> bool:
        """Put ``value`` unless the stream stops first."""
        while not self.stop.is_set():
            try:
                target.put(value, timeout=_POLL)
                return True
            except queue.Full:
                pass
        return False

    def _load_loop(self) -> None:
        try:
            while not self.stop.is_set():
                with self.sources_lock:  # (sources may be a generator: one next() at a time)
                    source = next(self.sources, _END)
                if source is _END:
                    break
                item = _Item(StreamResult(source))
                try:
                    item.result.frame = self.load(source)
                except Exception as error:
                    item.result.error = item_error(error).with_traceback(None)
                if not self._offer(self.loaded, item):
                    return
                del item
            self._offer(self.loaded, _END)
        except BaseException as error:  # a bug, or an interrupt raised in load: stop the stream with it
            self._offer(self.loaded, _Failure(error))

    def _save_loop(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    item = self.finished.get(timeout=_POLL)
                except queue.Empty:
                    continue
                if item is _END:
                    return
                self.results.put(self.save(self._finish(item)))
                del item
        except BaseException as error:
            self.results.put(_Failure(error))

    def _finish(self, item: _Item) -> StreamResult:
        """Paste the restored faces into the frame (or bring aligned crops back to their own size)."""
        result = item.result
        if result.error is not None or not item.restored:
            return result
        restored = torch.stack(item.restored)
        try:
            pixels = result.frame.pixels.to("cpu", torch.float32)
            if self.aligned:
                result.image = aligned_results(restored, pixels)
            else:
                result.image = _paste_chunk(item.chunk, restored, self.parser, self.paste, pixels)[0]
            result.faces = len(restored)
        except Exception as error:
            result.error = item_error(error).with_traceback(None)
        return result
