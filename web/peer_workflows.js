// Workflows made with facerestore_cf, ReActor or lucak5s/comfyui_gfpgan open on this pack's twins of their
// face-restore nodes when that pack is not installed. The twins have the peer's inputs and widgets in the same
// order, so only a node's type changes: links, widget values, titles and positions stay. The server says which
// types have twins (GET /gfpgan/peer_nodes, from nodes/peer_workflows.py). Where ComfyUI has node replacement
// (0.19 on) it does this itself, for prompts and in the frontend's missing-nodes dialog, and this does nothing.
const { app } = window.comfyAPI?.app ?? (await import("../../scripts/app.js"));
const { api } = window.comfyAPI?.api ?? (await import("../../scripts/api.js"));

const REPLACEMENTS_ROUTE = "/node_replacements"; // ComfyUI's own node replacement (app/node_replace_manager.py)

async function getJson(route) {
  try {
    const response = await api.fetchApi(route);
    return response.ok ? await response.json() : null;
  } catch {
    return null;
  }
}

// Our twins by peer type, or an empty table where ComfyUI replaces those nodes itself.
const table = (async () => {
  const twins = (await getJson("/gfpgan/peer_nodes")) ?? {};
  const native = await getJson(REPLACEMENTS_ROUTE);
  if (native && Object.keys(twins).some((type) => native[type])) return {};
  return twins;
})();

function registered(type) {
  return type in (window.LiteGraph ?? globalThis.LiteGraph)?.registered_node_types;
}

// Every node of a workflow, subgraphs' too (frontend 1.24 on keeps them under definitions.subgraphs).
function nodesOf(graphData) {
  const subgraphs = graphData?.definitions?.subgraphs ?? [];
  return [...(graphData?.nodes ?? []), ...subgraphs.flatMap((subgraph) => subgraph.nodes ?? [])];
}

function tell(replaced) {
  const detail = Object.entries(replaced).map(([type, { twin, n }]) => `${type} → ${twin} (${n}×)`).join(", ");
  const summary = "other packs' face-restore nodes opened on this pack's twins";
  console.info(`[GFPGAN] ${summary}: ${detail}`);
  app.extensionManager?.toast?.add?.({ severity: "info", summary: `GFPGAN: ${summary}`, detail, life: 8000 });
}

app.registerExtension({
  name: "comfyui_gfpgan.peerWorkflows",
  async beforeConfigureGraph(graphData) {
    const twins = await table;
    const replaced = {};
    for (const node of nodesOf(graphData)) {
      const twin = twins[node.type];
      if (!twin || registered(node.type) || !registered(twin.type)) continue; // the peer pack is installed
      replaced[node.type] = { twin: twin.type, n: (replaced[node.type]?.n ?? 0) + 1 };
      if (node.properties?.["Node name for S&R"] === node.type) node.properties["Node name for S&R"] = twin.type;
      node.type = twin.type;
    }
    if (Object.keys(replaced).length) tell(replaced);
  },
});
