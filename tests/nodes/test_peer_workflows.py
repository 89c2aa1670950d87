"""Moving other packs' workflows onto our twins (nodes/peer_workflows.py) and `comfyui-gfpgan migrate-workflow`."""

from __future__ import annotations

import copy
import json
import struct
import zlib

import pytest

from comfyui_gfpgan.jobs.cli import main
from comfyui_gfpgan.nodes.peer_workflows import (
    BY_PEER_TYPE,
    WorkflowError,
    migrate_file,
    migrate_png,
    migrate_workflow,
)
from paths import TESTS

WORKFLOWS = TESTS / "peer_workflows"


def load(name: str) -> dict:
    return json.loads((WORKFLOWS / f"{name}.json").read_text(encoding="utf-8"))


def without_types(workflow: dict) -> dict:
    """The workflow with node types (and the S&R names that follow them) taken out: what must not change."""
    stripped = copy.deepcopy(workflow)
    for node in stripped["nodes"]:
        node.pop("type"), node.get("properties", {}).pop("Node name for S&R", None)
    return stripped


@pytest.mark.parametrize("name", ["facerestore_cf_ui", "reactor_ui"])
def test_ui_workflow_changes_only_the_peer_nodes_types(name):
    original = load(name)
    migrated = migrate_workflow(original)
    assert without_types(migrated.workflow) == without_types(original)  # links, widgets, titles, positions kept
    for before, after in zip(original["nodes"], migrated.workflow["nodes"]):
        peer = BY_PEER_TYPE.get(before["type"])
        assert after["type"] == (peer.our_type if peer else before["type"])
        assert after["properties"]["Node name for S&R"] == after["type"]
    assert len(migrated.changes) == sum(n["type"] in BY_PEER_TYPE for n in original["nodes"]) >= 1
    assert original == load(name)  # the input is not modified


@pytest.mark.parametrize("name", ["facerestore_cf_api", "reactor_api"])
def test_api_prompt_changes_only_class_types(name):
    original = load(name)
    migrated = migrate_workflow(original).workflow
    assert migrated.keys() == original.keys()
    for key, node in original.items():
        peer = BY_PEER_TYPE.get(node["class_type"])
        assert migrated[key]["class_type"] == (peer.our_type if peer else node["class_type"])
        assert migrated[key]["inputs"] == node["inputs"] and migrated[key]["_meta"] == node["_meta"]


def test_subgraph_nodes_are_moved_too():
    workflow = load("reactor_ui")
    inner = copy.deepcopy(workflow["nodes"][1])
    workflow["definitions"] = {"subgraphs": [{"id": "sub", "nodes": [inner], "links": []}]}
    migrated = migrate_workflow(workflow).workflow
    assert migrated["definitions"]["subgraphs"][0]["nodes"][0]["type"] == "GFPGANPeerReActorRestoreFace"


def test_face_swap_nodes_are_refused_by_name():
    workflow = load("reactor_ui")
    workflow["nodes"].append({"id": 9, "type": "ReActorFaceSwap", "widgets_values": []})
    with pytest.raises(WorkflowError, match=r"node 9 \(ReActorFaceSwap, ComfyUI-ReActor\).*nothing was written"):
        migrate_workflow(workflow)


def test_a_newer_peer_node_with_more_widgets_is_refused():
    workflow = load("facerestore_cf_ui")
    workflow["nodes"][2]["widgets_values"].append("new")
    with pytest.raises(WorkflowError, match="a newer version of it"):
        migrate_workflow(workflow)


@pytest.mark.parametrize("data", [[], {"nodes": "x"}, {"a": 1}])
def test_what_is_no_workflow_is_said_so(data):
    with pytest.raises(WorkflowError, match="not a ComfyUI workflow"):
        migrate_workflow(data)


def png_with(texts: dict[str, tuple[bytes, bytes]]) -> bytes:
    """A 1x1 PNG holding text chunks ``{key: (chunk type, body)}``, as ComfyUI's Save Image writes them."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    pixels = chunk(b"IDAT", zlib.compress(b"\0\x10\x20\x30"))
    return b"\x89PNG\r\n\x1a\n" + header + b"".join(chunk(*t) for t in texts.values()) + pixels + chunk(b"IEND", b"")


def read_texts(png: bytes) -> dict[str, str]:
    from comfyui_gfpgan.nodes.peer_workflows import _png_chunks, _read_text_chunk

    return dict(t for t in (_read_text_chunk(kind, body) for kind, body in _png_chunks(png)) if t)


def test_png_workflow_and_prompt_are_rewritten_and_the_pixels_kept():
    ui, api = json.dumps(load("reactor_ui"), ensure_ascii=False), json.dumps(load("reactor_api"))
    png = png_with({"prompt": (b"tEXt", b"prompt\0" + api.encode("latin-1")),
                    "workflow": (b"iTXt", b"workflow\0\0\0\0\0" + ui.encode("utf-8"))})  # emoji title: iTXt
    migrated, changes = migrate_png(png)
    texts = read_texts(migrated)
    assert json.loads(texts["workflow"]) == migrate_workflow(load("reactor_ui")).workflow
    assert json.loads(texts["prompt"]) == migrate_workflow(load("reactor_api")).workflow
    assert [c.split(":")[0] for c in changes] == ["prompt", "workflow"]
    import cv2
    import numpy as np

    decode = lambda data: cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(decode(migrated), decode(png))  # a valid PNG still, same pixels


def test_png_without_a_workflow_is_refused():
    with pytest.raises(WorkflowError, match="holds no ComfyUI workflow"):
        migrate_png(png_with({}))


def test_migrate_file_never_writes_over_its_input(tmp_path):
    source = tmp_path / "w.json"
    source.write_text(json.dumps(load("reactor_api")))
    with pytest.raises(WorkflowError, match="is the input file"):
        migrate_file(source, tmp_path / "." / "w.json")


def test_cli_migrates_a_file_and_says_what_it_changed(tmp_path, capsys):
    out = tmp_path / "out.json"
    assert main(["migrate-workflow", str(WORKFLOWS / "facerestore_cf_ui.json"), "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert "FaceRestoreCFWithModel (facerestore_cf) -> GFPGANPeerFaceRestoreCFWithModel" in said
    assert "2 nodes moved" in said
    assert json.loads(out.read_text(encoding="utf-8")) == migrate_workflow(load("facerestore_cf_ui")).workflow
    assert main(["migrate-workflow", str(WORKFLOWS / "facerestore_cf_ui.json"), "-o", str(out)]) == 2  # exists
    assert "use --overwrite" in capsys.readouterr().err


def test_cli_writes_nothing_for_a_refused_or_unchanged_workflow(tmp_path, capsys):
    refused = tmp_path / "swap.json"
    refused.write_text(json.dumps({"1": {"class_type": "ReActorFaceSwap", "inputs": {}}}))
    assert main(["migrate-workflow", str(refused), "-o", str(tmp_path / "a.json")]) == 2
    assert "no counterpart in this pack" in capsys.readouterr().err and not (tmp_path / "a.json").exists()
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"1": {"class_type": "LoadImage", "inputs": {}}}))
    assert main(["migrate-workflow", str(plain), "-o", str(tmp_path / "b.json")]) == 0
    assert "nothing written" in capsys.readouterr().out and not (tmp_path / "b.json").exists()
    garbage = tmp_path / "g.json"
    garbage.write_bytes(b"\xff\x00 not json")
    assert main(["migrate-workflow", str(garbage), "-o", str(tmp_path / "c.json")]) == 2
    assert "neither JSON nor a PNG" in capsys.readouterr().err
