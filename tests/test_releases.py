"""The table of official files."""

from comfyui_gfpgan.releases import find_release


def test_release_table_names_official_files():
    release = find_release(sha256="E2CD4703AB14F4D01FD1383A8A8B266F9A5833DACEE8E6A79D3BF21A1B6BE5AD")
    assert release.file_name == "GFPGANv1.4.pth" and release.url.endswith("/GFPGANv1.4.pth")
    assert find_release(file_name="GFPGANv1.3.pth").version == "1.3"
    assert find_release(sha256="29e25ee90c170f4231163f4c83df6b59c968b73f3ce00cb884015ae005db083c").version == "1.2"
    assert find_release(sha256="0" * 64) is None
