"""Official GFP-GAN and facexlib releases, so tools can name a file by its hash."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Release:
    file_name: str
    version: str
    arch: str  # "GFPGANv1Clean", "GFPGANv1", "RetinaFace", "ParseNet"
    url: str
    sha256: str | None  # None where no verified hash is known to us


_GFPGAN = "https://github.com/TencentARC/GFPGAN/releases/download"
_FACEXLIB = "https://github.com/xinntao/facexlib/releases/download"

KNOWN_RELEASES: tuple[Release, ...] = (
    Release(
        "GFPGANv1.4.pth", "1.4", "GFPGANv1Clean", f"{_GFPGAN}/v1.3.0/GFPGANv1.4.pth",
        "e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad",
    ),
    Release(
        "GFPGANv1.3.pth", "1.3", "GFPGANv1Clean", f"{_GFPGAN}/v1.3.0/GFPGANv1.3.pth",
        "c953a88f2727c85c3d9ae72e2bd4846bbaf59fe6972ad94130e23e7017524a70",
    ),
    Release(
        # hash as pinned for this URL by the AUR gfpgan PKGBUILDs and by clibdev's mirror (two independent sources)
        "GFPGANCleanv1-NoCE-C2.pth", "1.2", "GFPGANv1Clean", f"{_GFPGAN}/v0.2.0/GFPGANCleanv1-NoCE-C2.pth",
        "29e25ee90c170f4231163f4c83df6b59c968b73f3ce00cb884015ae005db083c",
    ),
    Release("GFPGANv1.pth", "1", "GFPGANv1", f"{_GFPGAN}/v0.1.0/GFPGANv1.pth", None),
    Release(
        "detection_Resnet50_Final.pth", "resnet50", "RetinaFace", f"{_FACEXLIB}/v0.1.0/detection_Resnet50_Final.pth",
        "6d1de9c2944f2ccddca5f5e010ea5ae64a39845a86311af6fdf30841b0a5a16d",
    ),
    Release(
        "detection_mobilenet0.25_Final.pth", "mobilenet0.25", "RetinaFace",
        f"{_FACEXLIB}/v0.1.0/detection_mobilenet0.25_Final.pth", None,
    ),
    Release(
        "parsing_parsenet.pth", "parsenet", "ParseNet", f"{_FACEXLIB}/v0.2.2/parsing_parsenet.pth",
        "3d558d8d0e42c20224f13cf5a29c79eba2d59913419f945545d8cf7b72920de2",
    ),
)


def find_release(sha256: str | None = None, file_name: str | None = None) -> Release | None:
    """The release with this content hash (preferred) or, failing that, this file name."""
    if sha256:
        for release in KNOWN_RELEASES:
            if release.sha256 and release.sha256 == sha256.lower():
                return release
    if file_name:
        for release in KNOWN_RELEASES:
            if release.file_name == file_name:
                return release
    return None
