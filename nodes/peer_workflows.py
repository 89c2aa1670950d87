"""Workflows made with other face-restore packs, run on this pack's nodes: the table and the rewrite.

The nodes of mav-rik/facerestore_cf, Gourieff/ComfyUI-ReActor and lucak5s/comfyui_gfpgan that restore faces
have a twin here (``nodes/peers.py``) under our own id, with the peer's inputs, names, types, widget order and
defaults. Moving a workflow to this pack is therefore a change of node type and nothing else: links, widget
values, titles and positions stay. One table serves every path: ComfyUI's node replacement (``/prompt`` and the
frontend's quick fix, where ComfyUI has it), our frontend extension on older ComfyUI (``/gfpgan/peer_nodes``),
and ``comfyui-gfpgan migrate-workflow`` for files (UI or API JSON, or a PNG holding them).

Framework-free: the CLI imports it without ComfyUI.
"""

from __future__ import annotations

import copy
import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

FACE_DETECTION_CHOICES = ("retinaface_resnet50", "retinaface_mobile0.25", "YOLOv5l", "YOLOv5n")


@dataclass(frozen=True)
class PeerNode:
    """A peer pack's node and our twin of it: ``inputs`` are every input id in the peer's order (links and
    widgets alike, as an API prompt names them), ``widgets`` the ones a UI workflow stores in ``widgets_values``,
    in the peer's order; ``outputs`` how many outputs both have (the same, in the same order)."""

    peer_type: str
    pack: str
    our_type: str
    inputs: tuple[str, ...]
    widgets: tuple[str, ...]
    outputs: int = 1


PEER_NODES: tuple[PeerNode, ...] = (
    PeerNode("FaceRestoreModelLoader", "facerestore_cf", "GFPGANPeerFaceRestoreModelLoader",
             ("model_name",), ("model_name",)),
    PeerNode("FaceRestoreCFWithModel", "facerestore_cf", "GFPGANPeerFaceRestoreCFWithModel",
             ("facerestore_model", "image", "facedetection", "codeformer_fidelity"),
             ("facedetection", "codeformer_fidelity")),
    PeerNode("CropFace", "facerestore_cf", "GFPGANPeerCropFace", ("image", "facedetection"), ("facedetection",)),
    PeerNode("ReActorRestoreFace", "ComfyUI-ReActor", "GFPGANPeerReActorRestoreFace",
             ("image", "facedetection", "model", "visibility", "codeformer_weight"),
             ("facedetection", "model", "visibility", "codeformer_weight")),
    PeerNode("ReActorRestoreFaceAdvanced", "ComfyUI-ReActor", "GFPGANPeerReActorRestoreFaceAdvanced",
             ("image", "facedetection", "model", "visibility", "codeformer_weight", "face_selection",
              "sort_by", "reverse_order", "take_start", "take_count"),
             ("facedetection", "model", "visibility", "codeformer_weight", "face_selection",
              "sort_by", "reverse_order", "take_start", "take_count")),
    PeerNode("GFPGANRestorer", "comfyui_gfpgan (lucak5s)", "GFPGANPeerGFPGANRestorer",
             ("image", "model_name"), ("model_name",), outputs=2),
)
BY_PEER_TYPE = {node.peer_type: node for node in PEER_NODES}

# The peers' other nodes: face swapping and face models, which this pack does not do. A workflow holding one
# cannot be moved whole; migrate-workflow names them and writes nothing.
NOT_MAPPED = {
    **{name: "ComfyUI-ReActor" for name in (
        "ReActorFaceSwap", "ReActorFaceSwapOpt", "ReActorOptions", "ReActorFaceBoost", "ReActorMaskHelper",
        "ReActorSetWeight", "ReActorSaveFaceModel", "ReActorLoadFaceModel", "ReActorBuildFaceModel",
        "ReActorMakeFaceModelBatch", "ReActorFaceSimilarity", "ReActorImageDublicator", "ReActorUnload",
    )},
}


class WorkflowError(ValueError):
    """A file migrate-workflow cannot read or cannot move whole, said in one line."""


@dataclass
class Migration:
    """What a rewrite did: ``changes`` lines like ``node 3: FaceRestoreCFWithModel -> GFPGANPeer...``."""

    workflow: dict
    changes: list[str] = field(default_factory=list)


def is_api_prompt(data: dict) -> bool:
    """An API-format prompt (``{id: {"class_type", "inputs"}}``), as opposed to a UI workflow (``nodes``, ``links``)."""
    return "nodes" not in data and bool(data) and all(
        isinstance(node, dict) and "class_type" in node for node in data.values())


def _refuse_unmapped(types: list[tuple[str, str]]) -> None:
    unmapped = [(where, t) for where, t in types if t in NOT_MAPPED]
    if unmapped:
        named = ", ".join(f"{where} ({t}, {NOT_MAPPED[t]})" for where, t in unmapped)
        raise WorkflowError(f"cannot move this workflow: {named} {'has' if len(unmapped) == 1 else 'have'} no "
                            f"counterpart in this pack (face swapping is not part of it); nothing was written")


def migrate_api_prompt(prompt: dict) -> Migration:
    """The prompt with every peer node's ``class_type`` replaced by our twin's; inputs are kept as they are."""
    _refuse_unmapped([(f"node {key}", node.get("class_type")) for key, node in prompt.items()])
    migrated = copy.deepcopy(prompt)
    changes = []
    for key, node in migrated.items():
        peer = BY_PEER_TYPE.get(node.get("class_type"))
        if peer is not None:
            node["class_type"] = peer.our_type
            changes.append(f"node {key}: {peer.peer_type} ({peer.pack}) -> {peer.our_type}")
    return Migration(migrated, changes)


def _ui_nodes(workflow: dict) -> list[dict]:
    """Every node of a UI workflow, those inside subgraphs (``definitions.subgraphs``, frontend 1.24+) too."""
    found = list(workflow.get("nodes") or [])
    for subgraph in (workflow.get("definitions") or {}).get("subgraphs") or []:
        found += subgraph.get("nodes") or []
    return found


def migrate_ui_workflow(workflow: dict) -> Migration:
    """The workflow with every peer node's ``type`` replaced by our twin's: links, widget values, titles, sizes
    and positions are kept (the twin's inputs and widgets are the peer's, in the same order)."""
    _refuse_unmapped([(f"node {node.get('id')}", node.get("type")) for node in _ui_nodes(workflow)])
    migrated = copy.deepcopy(workflow)
    changes = []
    for node in _ui_nodes(migrated):
        peer = BY_PEER_TYPE.get(node.get("type"))
        if peer is None:
            continue
        widgets = node.get("widgets_values")
        if isinstance(widgets, list) and len(widgets) > len(peer.widgets):
            raise WorkflowError(f"node {node.get('id')} ({peer.peer_type}) stores {len(widgets)} widget values; "
                                f"{peer.pack}'s node has {len(peer.widgets)}: a newer version of it? nothing was written")
        node["type"] = peer.our_type
        properties = node.setdefault("properties", {})
        if properties.get("Node name for S&R") == peer.peer_type:
            properties["Node name for S&R"] = peer.our_type
        changes.append(f"node {node.get('id')}: {peer.peer_type} ({peer.pack}) -> {peer.our_type}")
    return Migration(migrated, changes)


def migrate_workflow(data: dict) -> Migration:
    """A UI workflow or an API prompt, rewritten (see ``migrate_ui_workflow`` / ``migrate_api_prompt``)."""
    if not isinstance(data, dict):
        raise WorkflowError("not a ComfyUI workflow: the JSON is not an object")
    if is_api_prompt(data):
        return migrate_api_prompt(data)
    if isinstance(data.get("nodes"), list):
        return migrate_ui_workflow(data)
    raise WorkflowError("not a ComfyUI workflow: neither a UI workflow (nodes, links) nor an API prompt "
                        "(nodes with class_type)")


# PNG: ComfyUI's Save Image stores the UI workflow and the API prompt as text chunks named "workflow" and
# "prompt" (tEXt, or iTXt for text outside Latin-1, e.g. ReActor's emoji titles).
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TEXT_KEYS = ("workflow", "prompt")


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if not data.startswith(_PNG_SIGNATURE):
        raise WorkflowError("not a PNG file")
    chunks, at = [], len(_PNG_SIGNATURE)
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + length]
        if len(body) != length:
            raise WorkflowError("the PNG file is truncated")
        chunks.append((kind, body))
        at += 12 + length
        if kind == b"IEND":
            break
    return chunks


def _read_text_chunk(kind: bytes, body: bytes) -> tuple[str, str] | None:
    try:
        if kind == b"tEXt":
            key, _, text = body.partition(b"\0")
            return key.decode("latin-1"), text.decode("latin-1")
        if kind == b"zTXt":
            key, _, rest = body.partition(b"\0")
            return key.decode("latin-1"), zlib.decompress(rest[1:]).decode("latin-1")
        if kind == b"iTXt":
            key, _, rest = body.partition(b"\0")
            compressed, rest = rest[0], rest[2:]
            _language, _, rest = rest.partition(b"\0")
            _translated, _, text = rest.partition(b"\0")
            return key.decode("latin-1"), (zlib.decompress(text) if compressed else text).decode("utf-8")
    except (zlib.error, UnicodeDecodeError, IndexError) as error:
        raise WorkflowError(f"the PNG's {kind.decode()} chunk is damaged ({error})") from None
    return None


def _text_chunk(key: str, text: str) -> tuple[bytes, bytes]:
    try:
        return b"tEXt", key.encode("latin-1") + b"\0" + text.encode("latin-1")
    except UnicodeEncodeError:
        return b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + text.encode("utf-8")


def _write_png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    out = [_PNG_SIGNATURE]
    for kind, body in chunks:
        out.append(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body)))
    return b"".join(out)


def migrate_png(data: bytes) -> tuple[bytes, list[str]]:
    """A PNG whose embedded workflow and prompt are rewritten; the image data and other chunks are unchanged."""
    chunks, changes, found = [], [], False
    for kind, body in _png_chunks(data):
        text = _read_text_chunk(kind, body)
        if text is None or text[0] not in _TEXT_KEYS:
            chunks.append((kind, body))
            continue
        found = True
        try:
            embedded = json.loads(text[1])
        except json.JSONDecodeError as error:
            raise WorkflowError(f"the PNG's {text[0]!r} text is not JSON ({error})") from None
        migration = migrate_workflow(embedded)
        changes += [f"{text[0]}: {change}" for change in migration.changes]
        chunks.append(_text_chunk(text[0], json.dumps(migration.workflow)))
    if not found:
        raise WorkflowError("this PNG holds no ComfyUI workflow (no 'workflow' or 'prompt' text)")
    return _write_png(chunks), changes


def migrate_file(source: Path, target: Path) -> list[str]:
    """``source`` (UI or API JSON, or a PNG holding them) rewritten to ``target``; the changes made. ``target``
    is written only when the whole file could be moved; it is never ``source`` itself."""
    if target.resolve() == source.resolve():
        raise WorkflowError(f"{target} is the input file; write the migrated copy elsewhere")
    try:
        data = source.read_bytes()
    except OSError as error:
        raise WorkflowError(f"cannot read {source}: {error.strerror or error}") from None
    if data.startswith(_PNG_SIGNATURE):
        output, changes = migrate_png(data)
    else:
        try:
            parsed = json.loads(data.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise WorkflowError(f"{source} is neither JSON nor a PNG ({error})") from None
        migration = migrate_workflow(parsed)
        output, changes = (json.dumps(migration.workflow, indent=2, ensure_ascii=False) + "\n").encode(), migration.changes
    if changes:
        partial = target.with_name(f".{target.name}.partial")
        try:
            partial.write_bytes(output)
            partial.replace(target)
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise WorkflowError(f"cannot write {target}: {error.strerror or error}") from None
    return changes


def replacement_table() -> dict[str, dict]:
    """What the frontend extension needs per peer node type: our twin's type and the peer's pack."""
    return {node.peer_type: {"type": node.our_type, "pack": node.pack} for node in PEER_NODES}
