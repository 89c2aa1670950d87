"""Deterministic test objects shared by tests and benchmarks (pytest puts tests/ on sys.path)."""

import struct
import zlib
from pathlib import Path

import torch

from comfyui_gfpgan.gfpgan_arch.testing import OFFICIAL_CLEAN_CONFIG, seeded_clean_network

__all__ = ["IdentityRestorer", "assert_same_tensors", "OFFICIAL_CLEAN_CONFIG", "SeededNoiseRestorer", "WeightedStandIn",
           "export_onnx", "header_bomb", "seeded_clean_network", "zlib_bomb"]


class IdentityRestorer(torch.nn.Module):
    """Stands in for a GFP-GAN network and returns its input: a restorer that changes nothing."""

    out_size = 512

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # the pipeline reads device and dtype from parameters

    def forward(self, x, fidelity=1.0, noise=None):
        return x


def assert_same_tensors(a: dict, b: dict) -> None:
    """Two state dicts with the same keys, dtypes and values, bit for bit."""
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def tile_photos(photos, height: int, width: int, count: int, face_widths=None):
    """A gray ``height`` x ``width`` frame holding ``count`` photos in a grid (2 columns up to 4, else 4).

    ``photos`` are ``(HxWx3 uint8, face box)`` pairs, used in turn; each sits at the top-left of its cell,
    scaled to 95% of the cell, or so that its face box is ``face_widths[i]`` px wide. Returns the frame
    and where each face box landed (x1, y1, x2, y2), in the frame's pixels.
    """
    import cv2
    import numpy as np

    canvas = np.full((height, width, 3), 128, np.uint8)
    columns = 4 if count > 4 else 2
    rows = -(-count // columns)
    cell_h, cell_w = height // rows, width // columns
    boxes = []
    for index in range(count):
        photo, box = photos[index % len(photos)]
        if face_widths is None:
            scale = min(cell_h / photo.shape[0], cell_w / photo.shape[1]) * 0.95
        else:
            scale = face_widths[index] / (box[2] - box[0])
        tile = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        assert tile.shape[0] <= cell_h and tile.shape[1] <= cell_w, "the photo does not fit its cell"
        y, x = (index // columns) * cell_h, (index % columns) * cell_w
        canvas[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
        # cv2 maps pixel centres: output (u + 0.5) = scale * (input + 0.5); boxes are in pixel edges
        sx, sy = tile.shape[1] / photo.shape[1], tile.shape[0] / photo.shape[0]
        boxes.append((x + box[0] * sx, y + box[1] * sy, x + box[2] * sx, y + box[3] * sy))
    return canvas, boxes


class WeightedStandIn(torch.nn.Module):
    """A CodeFormer-like graph: an image and a float64 ``weight`` [1] (CodeFormer's w) in, the image out;
    w = 1 returns the input, w = 0 the network's own restoration."""

    def __init__(self, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.conv2 = torch.nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        restored = torch.tanh(self.conv2(torch.nn.functional.leaky_relu(self.conv1(x), 0.2)))
        w = weight.to(x.dtype).reshape(-1, 1, 1, 1)
        return w * x + (1 - w) * restored


def export_onnx(module: torch.nn.Module, args: tuple, path, input_names, dynamic_batch=False, dynamo=False, **options):
    """``torch.onnx.export`` quietly: the TorchScript exporter (fast) unless ``dynamo``."""
    dynamic_axes = {name: {0: "batch"} for name in input_names[:1] + ["output"]} if dynamic_batch else None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), args, str(path), input_names=input_names, output_names=["output"],
                          dynamic_axes=dynamic_axes, dynamo=dynamo, external_data=False, **options)
    return path


class SeededNoiseRestorer(IdentityRestorer):
    """Stands in for a seeded GFP-GAN whose output depends on each face alone: the input, dimmed, plus noise from
    that face's generator (element-wise, so bit-identical whatever else shares the batch). Crops of 128 px.
    ``batches`` records how many faces each call got."""

    out_size = 128

    def __init__(self):
        super().__init__()
        self.batches: list[int] = []

    def forward(self, x, fidelity=1.0, noise=None):
        self.batches.append(x.shape[0])
        if noise is None:
            return x * 0.5
        return x * 0.5 + 0.3 * torch.stack([torch.randn(x.shape[1:], generator=g, device=x.device) for g in noise])


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def header_bomb(path: Path, side: int = 60000) -> Path:
    """A PNG whose header says side x side RGB (10.8 GB for 60000) around a few bytes of data."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + _png_chunk(b"IEND", b""))
    return path


def zlib_bomb(path: Path, side: int = 12000) -> Path:
    """A real, valid PNG of side x side gray zeros: 144 MP that compress to about 140 KB."""
    packer, row, body = zlib.compressobj(9), b"\0" * (side + 1), []  # (each row: filter byte, then pixels)
    body += [packer.compress(row * 500) for _ in range(side // 500)]
    body.append(packer.flush())
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", b"".join(body))
                     + _png_chunk(b"IEND", b""))
    return path
