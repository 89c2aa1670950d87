"""The table of official files."""

import re

from comfyui_gfpgan.model_files.releases import (
    DETECTOR_ARCHES,
    FACE_DETECTION,
    FACE_RESTORATION,
    KNOWN_RELEASES,
    find_release,
    hint_releases,
)
from paths import REPO_ROOT

RESTORER_FAMILIES = {"GFP-GAN", "CodeFormer", "RestoreFormer", "RestoreFormer++", "GPEN"}


def test_release_table_names_official_files():
    release = find_release(sha256="E2CD4703AB14F4D01FD1383A8A8B266F9A5833DACEE8E6A79D3BF21A1B6BE5AD")
    assert release.file_name == "GFPGANv1.4.pth" and release.url.endswith("/GFPGANv1.4.pth")
    assert find_release(file_name="GFPGANv1.3.pth").version == "1.3"
    assert find_release(sha256="29e25ee90c170f4231163f4c83df6b59c968b73f3ce00cb884015ae005db083c").version == "1.2"
    assert find_release(sha256="0" * 64) is None


def test_gfpgan_and_facexlib_entries_keep_their_data():
    """The rows that were there before the other families came: same names, versions, URLs and hashes;
    the GFP-GAN network names moved to ``network`` when ``arch`` became the family."""
    rows = {r.file_name: (r.version, r.arch, r.network, r.url.split("/releases/download/")[-1], r.sha256)
            for r in KNOWN_RELEASES}
    assert rows["GFPGANv1.4.pth"] == ("1.4", "GFP-GAN", "GFPGANv1Clean", "v1.3.0/GFPGANv1.4.pth",
                                      "e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad")
    assert rows["GFPGANv1.3.pth"][:4] == ("1.3", "GFP-GAN", "GFPGANv1Clean", "v1.3.0/GFPGANv1.3.pth")
    assert rows["GFPGANCleanv1-NoCE-C2.pth"][:4] == ("1.2", "GFP-GAN", "GFPGANv1Clean", "v0.2.0/GFPGANCleanv1-NoCE-C2.pth")
    assert rows["GFPGANv1.pth"] == ("1", "GFP-GAN", "GFPGANv1", "v0.1.0/GFPGANv1.pth", None)
    assert rows["detection_Resnet50_Final.pth"][:2] == ("resnet50", "RetinaFace")
    assert rows["detection_mobilenet0.25_Final.pth"][1:] == ("RetinaFace", "", "v0.1.0/detection_mobilenet0.25_Final.pth", None)
    assert rows["parsing_parsenet.pth"] == ("parsenet", "ParseNet", "", "v0.2.2/parsing_parsenet.pth",
                                            "3d558d8d0e42c20224f13cf5a29c79eba2d59913419f945545d8cf7b72920de2")


def test_new_families_are_found_by_hash_and_by_name():
    codeformer = find_release(sha256="1009e537e0c2a07d4cabce6355f53cb66767cd4b4297ec7a4a64ca4b8a5684b7")
    assert codeformer.file_name == "codeformer-v0.1.0.pth" and codeformer.arch == "CodeFormer"
    assert codeformer.url == "https://github.com/sczhou/CodeFormer/releases/download/v0.1.0/codeformer.pth"
    assert find_release(file_name="codeformer.pth") is codeformer  # sczhou's own name for the same file
    assert codeformer.non_commercial and "S-Lab License 1.0" in codeformer.licence and codeformer.crop_size == 512
    gpen = find_release(sha256="cec8892093d7b99828acde97bf231fb0964d3fb11b43f3b0951e36ef1e192a3e")
    assert (gpen.file_name, gpen.arch, gpen.crop_size) == ("GPEN-BFR-1024.onnx", "ONNX: GPEN", 1024)
    facefusion = find_release(sha256="21710e7ab61c82683576c428e9c1b6fe1ed419586b7b39e394c3449c294b550f")
    assert (facefusion.file_name, facefusion.arch) == ("codeformer.onnx", "ONNX: CodeFormer")
    restoreformer = find_release(sha256="07404d446d62ca3d5ed38b1de09a947a1e77d46dbccec961a74d713a8f24ace0")
    assert restoreformer.url.endswith("/GFPGAN/releases/download/v1.3.4/RestoreFormer.pth")
    assert (restoreformer.file_name, restoreformer.arch) == ("RestoreFormer.pth", "RestoreFormer")
    plus = find_release(file_name="RestoreFormer++.ckpt")
    assert plus.arch == "RestoreFormer++" and plus.sha256 is None and "Apache-2.0" in plus.licence
    assert find_release(file_name="GPEN-BFR-2048.pth").crop_size == 2048
    # a name the table does not know, even with a hash of nothing known
    assert find_release(sha256="f" * 64, file_name="codeformer-v0.2.0.pth") is None


def test_every_entry_is_well_formed():
    names = [name.lower() for r in KNOWN_RELEASES for name in r.names]
    assert len(names) == len(set(names)), "file names (and aliases) must be unique, whatever the case"
    hashes = [r.sha256 for r in KNOWN_RELEASES if r.sha256]
    assert len(hashes) == len(set(hashes)), "one entry per content hash, or find_release(sha256) is ambiguous"
    for release in KNOWN_RELEASES:
        where = release.file_name
        assert all(url.startswith("https://") for url in (release.url, *release.mirrors)), where
        assert release.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", release.sha256), where
        assert release.licence, where
        assert release.non_commercial == ("non-commercial" in release.licence), where
        if release.is_face_restorer:
            family = release.arch.removeprefix("ONNX: ")
            assert family in RESTORER_FAMILIES, where
            assert release.file_name.endswith(".onnx") == release.arch.startswith("ONNX: "), where
            assert release.crop_size in (256, 512, 1024, 2048), where
        else:
            assert release.arch in (*DETECTOR_ARCHES, "ParseNet") and not release.recommended, where


def test_not_found_hints_name_one_file_per_family():
    hints = hint_releases(FACE_RESTORATION)
    groups = ["ONNX" if r.arch.startswith("ONNX") else r.arch for r in hints]
    assert sorted(groups) == sorted(RESTORER_FAMILIES | {"ONNX"})  # every family, once
    assert [r.file_name for r in hints][:2] == ["GFPGANv1.4.pth", "codeformer-v0.1.0.pth"]
    assert [r.file_name for r in hint_releases("RetinaFace")] == [
        "detection_Resnet50_Final.pth", "detection_mobilenet0.25_Final.pth"]
    assert [r.file_name for r in hint_releases(FACE_DETECTION)] == [  # the detector loader reads both families
        "detection_Resnet50_Final.pth", "detection_mobilenet0.25_Final.pth", "yolov5l-face.pth", "yolov5n-face.pth"]


def test_yolov5_face_files_are_codeformers_with_both_licences():
    for file_name, size in (("yolov5l-face.pth", "l"), ("yolov5n-face.pth", "n")):
        release = find_release(file_name=file_name)
        assert (release.arch, release.version, release.sha256) == ("YOLOv5-face", size, None), file_name
        assert release.url == f"https://github.com/sczhou/CodeFormer/releases/download/v0.1.0/{file_name}"
        assert "GPL-3.0 (deepcam-cn/yolov5-face)" in release.licence and "S-Lab License 1.0" in release.licence
        assert release.non_commercial and not release.is_face_restorer


def test_every_detector_family_and_official_file_is_in_the_table():
    """The detector families face_detectors reads are the ones the table (and the loader's hint) names."""
    from comfyui_gfpgan.face_detectors import DETECTOR_FAMILIES

    assert DETECTOR_ARCHES == tuple(family.name for family in DETECTOR_FAMILIES)
    for family in DETECTOR_FAMILIES:
        assert {r.file_name for r in KNOWN_RELEASES if r.arch == family.name} == set(family.files), family.name


def test_readme_table_gives_each_files_url_and_hash():
    """The README's model table says what the release table knows: each file's URL and its sha256 or 'not verified'."""

    readme = (REPO_ROOT / "README.md").read_text()
    rows = {line.split("|")[1].strip().split(" (")[0]: line for line in readme.splitlines() if line.startswith("| ")}
    for release in KNOWN_RELEASES:
        row = rows.get(release.file_name)
        assert row is not None, f"README has no row for {release.file_name}"
        assert release.url in row and (f"`{release.sha256}`" if release.sha256 else "not verified") in row, row
