"""The official face-restoration files (and the facexlib helpers), so tools can name a file by its hash,
download it, and say where to get it.

A sha256 is given only where two independent sources pin it (the comment beside each entry names them);
elsewhere it is None and ``download`` says "not verified". FaceFusion publishes CRC32 ``.hash`` files
(``zlib.crc32``, 8 hex digits), not sha256, so its own hashes cannot verify a download here.
"""

from __future__ import annotations

from dataclasses import dataclass

FACE_RESTORATION = "face restoration"  # what ``missing_model_message`` passes for the restorer folder
FACE_DETECTION = "face detection"  # ... and for the detector loader: every file of every detector family
DETECTOR_ARCHES = ("RetinaFace", "YOLOv5-face")  # the families face_detectors reads (its DetectorFamily names)


@dataclass(frozen=True)
class Release:
    file_name: str
    version: str
    # the family: "GFP-GAN", "CodeFormer", "RestoreFormer", "RestoreFormer++", "GPEN", "ONNX: <family>";
    # "RetinaFace" / "YOLOv5-face" for the detectors, "ParseNet" for the facexlib parser
    arch: str
    url: str
    sha256: str | None  # None where no verified hash is known to us
    network: str = ""  # the network inside, where the family has several ("GFPGANv1Clean", "GFPGANv1")
    crop_size: int | None = None  # the aligned face crop it restores, px; None for the helpers
    licence: str = ""  # code and weights, as upstream states them
    non_commercial: bool = False
    recommended: bool = False  # the face-restore file a "not found" message suggests for its family
    aliases: tuple[str, ...] = ()  # other names the same file is commonly kept under
    mirrors: tuple[str, ...] = ()  # other places users fetch it from; ``download`` tries them in turn

    @property
    def is_face_restorer(self) -> bool:
        return self.crop_size is not None

    @property
    def names(self) -> tuple[str, ...]:
        return (self.file_name, *self.aliases)


_GFPGAN = "https://github.com/TencentARC/GFPGAN/releases/download"
_FACEXLIB = "https://github.com/xinntao/facexlib/releases/download"
_CODEFORMER = "https://github.com/sczhou/CodeFormer/releases/download"
_RFPP = "https://github.com/wzhouxiff/RestoreFormerPlusPlus/releases/download"
_GPEN_OSS = "https://public-vigen-video.oss-cn-shanghai.aliyuncs.com/robin/models"  # linked from yangxy/GPEN's README
_GPEN_HIRES = "https://www.modelscope.cn/models/iic/cv_gpen_image-portrait-enhancement-hires/resolve/master"
_REACTOR = "https://huggingface.co/datasets/Gourieff/ReActor/resolve/main/models/facerestore_models"
_ROPE = "https://github.com/Alucard24/rope-assets/releases/download/v1.0.8"
_FACEFUSION = "https://github.com/facefusion/facefusion-assets/releases/download/models-3.0.0"
_FACEFUSION_HF = "https://huggingface.co/facefusion/models-3.0.0/resolve/main"

_GFPGAN_LICENCE = "Apache-2.0 (TencentARC/GFPGAN; the weights carry no separate licence)"
_CODEFORMER_LICENCE = "S-Lab License 1.0: non-commercial use only (sczhou/CodeFormer, code and weights)"
_RESTOREFORMER_LICENCE = "Apache-2.0 (TencentARC/GFPGAN and wzhouxiff/RestoreFormer; no separate weights licence)"
_RFPP_LICENCE = "Apache-2.0 (wzhouxiff/RestoreFormerPlusPlus; the weights carry no separate licence)"
# yangxy/GPEN has no LICENSE file; its README said until 2026-03 "(c) Alibaba, 2021. For academic and
# non-commercial use only." (removed in commit 2c73670, nothing put in its place)
_GPEN_LICENCE = "academic and non-commercial use only (yangxy/GPEN README, (c) Alibaba 2021; no LICENSE file)"
_FACEXLIB_LICENCE = "MIT (xinntao/facexlib)"
_YOLOV5_FACE_LICENCE = ("code GPL-3.0 (deepcam-cn/yolov5-face); the weights as CodeFormer's release redistributes "
                        "them: S-Lab License 1.0, non-commercial use only")


def _onnx(licence: str) -> str:
    return f"{licence}; ONNX conversion"


KNOWN_RELEASES: tuple[Release, ...] = (
    # --- GFP-GAN (TencentARC/GFPGAN) ---
    Release(
        "GFPGANv1.4.pth", "1.4", "GFP-GAN", f"{_GFPGAN}/v1.3.0/GFPGANv1.4.pth",
        "e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad",
        network="GFPGANv1Clean", crop_size=512, licence=_GFPGAN_LICENCE, recommended=True,
    ),
    Release(
        "GFPGANv1.3.pth", "1.3", "GFP-GAN", f"{_GFPGAN}/v1.3.0/GFPGANv1.3.pth",
        "c953a88f2727c85c3d9ae72e2bd4846bbaf59fe6972ad94130e23e7017524a70",
        network="GFPGANv1Clean", crop_size=512, licence=_GFPGAN_LICENCE,
    ),
    Release(
        # hash as pinned for this URL by the AUR gfpgan PKGBUILDs and by clibdev's mirror (two independent sources)
        "GFPGANCleanv1-NoCE-C2.pth", "1.2", "GFP-GAN", f"{_GFPGAN}/v0.2.0/GFPGANCleanv1-NoCE-C2.pth",
        "29e25ee90c170f4231163f4c83df6b59c968b73f3ce00cb884015ae005db083c",
        network="GFPGANv1Clean", crop_size=512, licence=_GFPGAN_LICENCE,
    ),
    Release("GFPGANv1.pth", "1", "GFP-GAN", f"{_GFPGAN}/v0.1.0/GFPGANv1.pth", None,
            network="GFPGANv1", crop_size=512, licence=_GFPGAN_LICENCE),
    # --- CodeFormer (sczhou/CodeFormer) ---
    Release(
        # sczhou's release asset is codeformer.pth; A1111 and ReActor save it as codeformer-v0.1.0.pth.
        # sha256 pinned for sczhou's URL by arktronic/sd-multi (verify-resources.sh) and other downloaders, and
        # for ReActor's copy by Quaggles/SwarmUI-FaceTools and a Nix fetchModel table (SRI form)
        "codeformer-v0.1.0.pth", "0.1.0", "CodeFormer", f"{_CODEFORMER}/v0.1.0/codeformer.pth",
        "1009e537e0c2a07d4cabce6355f53cb66767cd4b4297ec7a4a64ca4b8a5684b7",
        crop_size=512, licence=_CODEFORMER_LICENCE, non_commercial=True, recommended=True,
        aliases=("codeformer.pth",), mirrors=(f"{_REACTOR}/codeformer-v0.1.0.pth",),
    ),
    # --- RestoreFormer (wzhouxiff/RestoreFormer, as converted and released by TencentARC/GFPGAN) ---
    Release(
        # pinned for this URL by the AUR python-gfpgan 1.3.8 PKGBUILD, and (290,785,322 bytes) by two model
        # manifests that fetch it from GFPGAN's release; lama-cleaner pins its md5 eaeeff6c4a1caa1673977cb374e6f699
        "RestoreFormer.pth", "1.0", "RestoreFormer", f"{_GFPGAN}/v1.3.4/RestoreFormer.pth",
        "07404d446d62ca3d5ed38b1de09a947a1e77d46dbccec961a74d713a8f24ace0",
        crop_size=512, licence=_RESTOREFORMER_LICENCE, recommended=True,
    ),
    # the original PyTorch Lightning checkpoint of RestoreFormer, released beside RestoreFormer++
    Release("RestoreFormer.ckpt", "1.0", "RestoreFormer", f"{_RFPP}/v1.0.0/RestoreFormer.ckpt", None,
            crop_size=512, licence=_RFPP_LICENCE),
    # --- RestoreFormer++ (wzhouxiff/RestoreFormerPlusPlus: inference.py and gradio_demo fetch this URL) ---
    Release("RestoreFormer++.ckpt", "1.0.0", "RestoreFormer++", f"{_RFPP}/v1.0.0/RestoreFormer%2B%2B.ckpt", None,
            crop_size=512, licence=_RFPP_LICENCE, recommended=True),
    # --- GPEN (yangxy/GPEN). 256/512 are still linked from the README (Alibaba OSS); 1024/2048 only on
    # ModelScope (pytorch_model.pt = 1024, pytorch_model-2048.pt = 2048, as the README says). No sha256 pinned. ---
    Release(
        "GPEN-BFR-512.pth", "512", "GPEN", f"{_GPEN_OSS}/GPEN-BFR-512.pth", None,
        crop_size=512, licence=_GPEN_LICENCE, non_commercial=True, recommended=True,
        mirrors=("https://github.com/vinthony/video-retalking/releases/download/v0.0.1/GPEN-BFR-512.pth",
                 "https://huggingface.co/akhaliq/GPEN-BFR-512/resolve/main/GPEN-BFR-512.pth"),
    ),
    Release("GPEN-BFR-256.pth", "256", "GPEN", f"{_GPEN_OSS}/GPEN-BFR-256.pth", None,
            crop_size=256, licence=_GPEN_LICENCE, non_commercial=True),
    Release("GPEN-BFR-1024.pth", "1024", "GPEN", f"{_GPEN_HIRES}/pytorch_model.pt", None,
            crop_size=1024, licence=_GPEN_LICENCE, non_commercial=True),
    Release("GPEN-BFR-2048.pth", "2048", "GPEN", f"{_GPEN_HIRES}/pytorch_model-2048.pt", None,
            crop_size=2048, licence=_GPEN_LICENCE, non_commercial=True),
    # --- ONNX files ReActor downloads (Gourieff's Hugging Face dataset) ---
    Release("GFPGANv1.3.onnx", "1.3", "ONNX: GFP-GAN", f"{_REACTOR}/GFPGANv1.3.onnx", None,
            crop_size=512, licence=_onnx(_GFPGAN_LICENCE)),
    # no sha256: 6548e54c... is pinned for Rope's / netrunner-exe's GFPGANv1.4.onnx, nobody ties it to this copy
    Release("GFPGANv1.4.onnx", "1.4", "ONNX: GFP-GAN", f"{_REACTOR}/GFPGANv1.4.onnx", None,
            crop_size=512, licence=_onnx(_GFPGAN_LICENCE)),
    Release(
        # pinned for this URL by Quaggles/SwarmUI-FaceTools and by a Nix fetchModel table (SRI form); the same
        # hash for hacksider/deep-live-cam's copy. Rope's GPEN-BFR-512.onnx is another file (0960f836...)
        "GPEN-BFR-512.onnx", "512", "ONNX: GPEN", f"{_REACTOR}/GPEN-BFR-512.onnx",
        "bf80acb8e91ba8852e3f012505be2c3b6cd6b3eed5ec605e3db87863c4e74d4e",
        crop_size=512, licence=_onnx(_GPEN_LICENCE), non_commercial=True,
    ),
    Release(
        # pinned for this URL by Quaggles/SwarmUI-FaceTools, and for the same file in Rope's assets (v1.0.8)
        # by Rope and visomaster/VisoMaster
        "GPEN-BFR-1024.onnx", "1024", "ONNX: GPEN", f"{_REACTOR}/GPEN-BFR-1024.onnx",
        "cec8892093d7b99828acde97bf231fb0964d3fb11b43f3b0951e36ef1e192a3e",
        crop_size=1024, licence=_onnx(_GPEN_LICENCE), non_commercial=True, mirrors=(f"{_ROPE}/GPEN-BFR-1024.onnx",),
    ),
    Release(
        # as GPEN-BFR-1024.onnx: Quaggles/SwarmUI-FaceTools for this URL, Rope and visomaster/VisoMaster
        "GPEN-BFR-2048.onnx", "2048", "ONNX: GPEN", f"{_REACTOR}/GPEN-BFR-2048.onnx",
        "d0229ff43f979c360bd19daa9cd0ce893722d59f41a41822b9223ebbe4f89b3e",
        crop_size=2048, licence=_onnx(_GPEN_LICENCE), non_commercial=True, mirrors=(f"{_ROPE}/GPEN-BFR-2048.onnx",),
    ),
    Release(
        # not in ReActor's dataset; the 256 graph ReActor users add from Rope's assets. Pinned by Rope,
        # visomaster/VisoMaster and manifests pinning netrunner-exe/Face-Upscalers-onnx's copy
        "GPEN-BFR-256.onnx", "256", "ONNX: GPEN", f"{_ROPE}/GPEN-BFR-256.onnx",
        "aa5bd3ab238640a378c59e4a560f7a7150627944cf2129e6311ae4720e833271",
        crop_size=256, licence=_onnx(_GPEN_LICENCE), non_commercial=True,
    ),
    Release("RestoreFormer_PP.onnx", "1.0.0", "ONNX: RestoreFormer++", f"{_REACTOR}/RestoreFormer_PP.onnx", None,
            crop_size=512, licence=_onnx(_RFPP_LICENCE)),
    # --- ONNX files FaceFusion downloads (facefusion-assets models-3.0.0; the same files on its HF mirror) ---
    Release(
        # pinned by two unrelated downloaders; one also checks FaceFusion's own CRC32 (1456f3ab)
        "codeformer.onnx", "0.1.0", "ONNX: CodeFormer", f"{_FACEFUSION}/codeformer.onnx",
        "21710e7ab61c82683576c428e9c1b6fe1ed419586b7b39e394c3449c294b550f",
        crop_size=512, licence=_onnx(_CODEFORMER_LICENCE), non_commercial=True,
        mirrors=(f"{_FACEFUSION_HF}/codeformer.onnx",),
    ),
    Release("gfpgan_1.2.onnx", "1.2", "ONNX: GFP-GAN", f"{_FACEFUSION}/gfpgan_1.2.onnx", None,
            crop_size=512, licence=_onnx(_GFPGAN_LICENCE), mirrors=(f"{_FACEFUSION_HF}/gfpgan_1.2.onnx",)),
    Release("gfpgan_1.3.onnx", "1.3", "ONNX: GFP-GAN", f"{_FACEFUSION}/gfpgan_1.3.onnx", None,
            crop_size=512, licence=_onnx(_GFPGAN_LICENCE), mirrors=(f"{_FACEFUSION_HF}/gfpgan_1.3.onnx",)),
    Release(
        # pinned by idootop/TinyFace (its re-hosted copy) and several downloaders; one also checks the CRC32 5a6c6364
        "gfpgan_1.4.onnx", "1.4", "ONNX: GFP-GAN", f"{_FACEFUSION}/gfpgan_1.4.onnx",
        "accc4757b26bdb89b32b4d3500d4f79c9dff97c1dd7c7104bf9dcb95e3311385",
        crop_size=512, licence=_onnx(_GFPGAN_LICENCE), recommended=True, mirrors=(f"{_FACEFUSION_HF}/gfpgan_1.4.onnx",),
    ),
    Release(
        # pinned by several unrelated face-swap manifests
        "gpen_bfr_256.onnx", "256", "ONNX: GPEN", f"{_FACEFUSION}/gpen_bfr_256.onnx",
        "bad8bf0426873828df2dbf4e3b3d9ababba9da7965b8b72426569486f7ae5c25",
        crop_size=256, licence=_onnx(_GPEN_LICENCE), non_commercial=True,
        mirrors=(f"{_FACEFUSION_HF}/gpen_bfr_256.onnx",),
    ),
    Release(
        # pinned by several unrelated face-swap manifests
        "gpen_bfr_512.onnx", "512", "ONNX: GPEN", f"{_FACEFUSION}/gpen_bfr_512.onnx",
        "d5f066b9068a8b74217f9712e28e875a6144629b108a6f7355acbdb3a2832c54",
        crop_size=512, licence=_onnx(_GPEN_LICENCE), non_commercial=True,
        mirrors=(f"{_FACEFUSION_HF}/gpen_bfr_512.onnx",),
    ),
    Release(
        # pinned by a face-engine model zoo and by two other projects (one keeps it as GPEN-BFR-1024.onnx)
        "gpen_bfr_1024.onnx", "1024", "ONNX: GPEN", f"{_FACEFUSION}/gpen_bfr_1024.onnx",
        "bcd31aa52110a2005efc96abbab4546d57e42482648f08715b552423d96b381b",
        crop_size=1024, licence=_onnx(_GPEN_LICENCE), non_commercial=True,
        mirrors=(f"{_FACEFUSION_HF}/gpen_bfr_1024.onnx",),
    ),
    # no sha256: 66d12a63... is pinned by one project only
    Release("gpen_bfr_2048.onnx", "2048", "ONNX: GPEN", f"{_FACEFUSION}/gpen_bfr_2048.onnx", None,
            crop_size=2048, licence=_onnx(_GPEN_LICENCE), non_commercial=True,
            mirrors=(f"{_FACEFUSION_HF}/gpen_bfr_2048.onnx",)),
    Release(
        # pinned by two unrelated model managers
        "restoreformer_plus_plus.onnx", "1.0.0", "ONNX: RestoreFormer++", f"{_FACEFUSION}/restoreformer_plus_plus.onnx",
        "f4db5a89902b6a2d452446f5721245a6f7185f699b6aec7b77285adb4d504337",
        crop_size=512, licence=_onnx(_RFPP_LICENCE), mirrors=(f"{_FACEFUSION_HF}/restoreformer_plus_plus.onnx",),
    ),
    # --- facexlib helpers ---
    Release(
        "detection_Resnet50_Final.pth", "resnet50", "RetinaFace", f"{_FACEXLIB}/v0.1.0/detection_Resnet50_Final.pth",
        "6d1de9c2944f2ccddca5f5e010ea5ae64a39845a86311af6fdf30841b0a5a16d",
        licence=_FACEXLIB_LICENCE,
    ),
    Release(
        "detection_mobilenet0.25_Final.pth", "mobilenet0.25", "RetinaFace",
        f"{_FACEXLIB}/v0.1.0/detection_mobilenet0.25_Final.pth", None, licence=_FACEXLIB_LICENCE,
    ),
    Release(
        "parsing_parsenet.pth", "parsenet", "ParseNet", f"{_FACEXLIB}/v0.2.2/parsing_parsenet.pth",
        "3d558d8d0e42c20224f13cf5a29c79eba2d59913419f945545d8cf7b72920de2",
        licence=_FACEXLIB_LICENCE,
    ),
    # --- YOLOv5-face (deepcam-cn/yolov5-face), as CodeFormer's facelib converted and released them. No sha256:
    # one source only, the Hugging Face LFS object names of one project's copies (l 1ba9d212..., n d2bbfbe9...) ---
    Release("yolov5l-face.pth", "l", "YOLOv5-face", f"{_CODEFORMER}/v0.1.0/yolov5l-face.pth", None,
            licence=_YOLOV5_FACE_LICENCE, non_commercial=True),
    Release("yolov5n-face.pth", "n", "YOLOv5-face", f"{_CODEFORMER}/v0.1.0/yolov5n-face.pth", None,
            licence=_YOLOV5_FACE_LICENCE, non_commercial=True),
)


def find_release(sha256: str | None = None, file_name: str | None = None) -> Release | None:
    """The release with this content hash (preferred) or, failing that, this file name (or an alias of it)."""
    if sha256:
        for release in KNOWN_RELEASES:
            if release.sha256 and release.sha256 == sha256.lower():
                return release
    if file_name:
        for release in KNOWN_RELEASES:
            if file_name in release.names:
                return release
    return None


def hint_releases(arch: str) -> list[Release]:
    """What a "file not found" message suggests: for ``FACE_RESTORATION`` the recommended file of each
    family (one for all ONNX files), for ``FACE_DETECTION`` every detector file, else every file of that family."""
    if arch == FACE_RESTORATION:
        return [r for r in KNOWN_RELEASES if r.is_face_restorer and r.recommended]
    if arch == FACE_DETECTION:
        return [r for r in KNOWN_RELEASES if r.arch in DETECTOR_ARCHES]
    return [r for r in KNOWN_RELEASES if r.arch == arch]
