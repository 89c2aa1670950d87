// The restore nodes' fidelity widget follows the model family's default when the user picks or connects a model:
// 1.0 for GFP-GAN (its CS-SFT weight), 0.5 for CodeFormer (upstream's w). The server says which family a file is
// (GET /gfpgan/model_info, nodes/routes.py). A value the user changed is kept, and loading a saved workflow
// changes nothing: only a value still at the default of the model it was last set for moves to the new default.
const { app } = window.comfyAPI?.app ?? (await import("../../scripts/app.js"));
const { api } = window.comfyAPI?.api ?? (await import("../../scripts/api.js"));

const LOADER = "GFPGANModelLoader";
const FROM_UPSCALE_MODEL = "GFPGANFromUpscaleModel"; // takes GFP-GAN networks only
const GFPGAN_INFO = { family: "GFP-GAN", fidelity: true, default_fidelity: 1.0 };
const RESTORERS = new Set(["GFPGANFaceRestore", "GFPGANRestoreFaces"]);
const SCHEMA_DEFAULT = 1.0; // the widget's default in the node schema: GFP-GAN's
const infoByName = new Map();
let loadingGraph = false;

async function modelInfo(name) {
  if (!infoByName.has(name)) {
    infoByName.set(name, api.fetchApi(`/gfpgan/model_info?model_name=${encodeURIComponent(name)}`)
      .then((response) => (response.ok ? response.json() : null))
      .catch(() => null));
  }
  return infoByName.get(name);
}

const typeOf = (node) => node?.comfyClass ?? node?.type;
const widget = (node, name) => node?.widgets?.find((w) => w.name === name);

// The model node feeding a restore node's model input, through legacy Reroute nodes.
function loaderOf(node) {
  const slot = node.inputs?.findIndex((input) => input.type === "GFPGAN_MODEL");
  let source = slot >= 0 ? node.getInputNode(slot) : null;
  for (let hops = 0; typeOf(source) === "Reroute" && hops < 32; hops++) source = source.getInputNode(0);
  return [LOADER, FROM_UPSCALE_MODEL].includes(typeOf(source)) ? source : null;
}

// The restore nodes a loader feeds, through legacy Reroute nodes.
function restorersOf(loader) {
  const found = [];
  const walk = (node, depth) => {
    for (const target of node.getOutputNodes(0) ?? []) {
      if (RESTORERS.has(typeOf(target))) found.push(target);
      else if (typeOf(target) === "Reroute" && depth < 32) walk(target, depth + 1);
    }
  };
  walk(loader, 0);
  return found;
}

// What the restore node's fidelity was last set for; a node loaded from a workflow learns it without a change.
async function follow(restorer, source, { change }) {
  const fidelity = widget(restorer, "fidelity");
  const name = widget(source, "model_name")?.value;
  if (!fidelity || (typeOf(source) === LOADER && !name)) return;
  const info = typeOf(source) === LOADER ? await modelInfo(name) : GFPGAN_INFO;
  if (!info?.fidelity) return; // no knob (GPEN, RestoreFormer): the value stays, the tooltip and the log say so
  const followed = restorer.gfpganFidelityDefault ?? SCHEMA_DEFAULT;
  if (change && Math.abs(fidelity.value - followed) < 1e-9 && fidelity.value !== info.default_fidelity) {
    fidelity.value = info.default_fidelity;
    restorer.setDirtyCanvas?.(true, true);
  }
  restorer.gfpganFidelityDefault = info.default_fidelity;
}

app.registerExtension({
  name: "comfyui_gfpgan.fidelityDefaults",
  beforeConfigureGraph() {
    loadingGraph = true;
  },
  afterConfigureGraph() {
    loadingGraph = false;
  },
  loadedGraphNode(node) {
    if (RESTORERS.has(typeOf(node))) {
      const source = loaderOf(node);
      if (source) follow(node, source, { change: false });
    }
  },
  nodeCreated(node) {
    if (typeOf(node) === LOADER) {
      const choice = widget(node, "model_name");
      if (!choice) return;
      const chosen = choice.callback;
      choice.callback = function (...args) {
        const result = chosen?.apply(this, args);
        for (const restorer of restorersOf(node)) follow(restorer, node, { change: true });
        return result;
      };
    } else if (RESTORERS.has(typeOf(node))) {
      const changed = node.onConnectionsChange;
      node.onConnectionsChange = function (side, slot, connected, ...rest) {
        const result = changed?.apply(this, [side, slot, connected, ...rest]);
        const input = side === 1 ? this.inputs?.[slot] : null; // 1: an input slot (LiteGraph.INPUT)
        if (connected && !loadingGraph && input?.type === "GFPGAN_MODEL") {
          const source = loaderOf(this);
          if (source) follow(this, source, { change: true });
        }
        return result;
      };
    }
  },
});
