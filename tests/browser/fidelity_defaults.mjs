// Drives web/fidelity_defaults.js in a real ComfyUI frontend, as a user would, and prints what the restore nodes'
// fidelity widgets show after each step (one JSON object on stdout; tests/test_comfyui_e2e.py checks it).
//
//   node tests/browser/fidelity_defaults.mjs http://127.0.0.1:8188 GFPGAN_FILE CODEFORMER_FILE
// Needs playwright-core (on NODE_PATH) and Debian's chromium.
import { createRequire } from "node:module";

const { chromium } = createRequire(import.meta.url)("playwright-core"); // honours NODE_PATH
const [base, gfpgan, codeformer] = process.argv.slice(2);

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(String(error.stack ?? error).split("\n").slice(0, 4).join(" | ")));
  await page.goto(base);
  await page.waitForFunction(() => window.app?.graph !== undefined && window.LiteGraph, null, { timeout: 60000 });
  await page.waitForTimeout(3000);
  // Errors of the frontend's own start-up are not ours (0.3.64's frontend throws one in a setting's onChange).
  const startup = errors.splice(0);
  const steps = await page.evaluate(async ({ gfpgan, codeformer }) => {
    const { app, LiteGraph } = window;
    const settle = () => new Promise((resolve) => setTimeout(resolve, 1500)); // the route's answer arrives
    const widget = (node, name) => node.widgets.find((w) => w.name === name);
    const fidelity = (node) => widget(node, "fidelity").value;
    const pick = (loader, name) => { // what LiteGraph does when the user picks an entry of the combo
      const combo = widget(loader, "model_name");
      combo.value = name;
      combo.callback?.(name, app.canvas, loader);
    };
    const modelSlot = (node) => node.inputs.findIndex((input) => input.type === "GFPGAN_MODEL");
    const add = (type) => {
      const node = LiteGraph.createNode(type);
      app.graph.add(node);
      return node;
    };
    const steps = {};
    app.graph.clear();
    const loader = add("GFPGANModelLoader");
    const restore = add("GFPGANFaceRestore");
    const modular = add("GFPGANRestoreFaces");
    steps.new_nodes = [fidelity(restore), fidelity(modular)];
    widget(loader, "model_name").value = codeformer; // chosen before anything is connected
    loader.connect(0, restore, modelSlot(restore));
    await settle();
    steps.connected_to_codeformer = fidelity(restore);
    pick(loader, gfpgan);
    await settle();
    steps.picked_gfpgan = fidelity(restore);
    widget(restore, "fidelity").value = 0.7; // the user's own value
    pick(loader, codeformer);
    await settle();
    steps.own_value_then_codeformer = fidelity(restore);
    loader.connect(0, modular, modelSlot(modular));
    await settle();
    steps.modular_connected_to_codeformer = fidelity(modular);
    const prompt = (await app.graphToPrompt()).output; // what Queue would send
    steps.queued = [prompt[restore.id].inputs.fidelity, prompt[modular.id].inputs.fidelity];
    // A saved workflow: the all-in-one node at 1.0 with CodeFormer (the user's choice), the modular at 0.5.
    widget(restore, "fidelity").value = 1.0;
    const saved = structuredClone(app.graph.serialize());
    await app.loadGraphData(saved);
    await settle();
    const loaded = (type) => app.graph._nodes.find((node) => (node.comfyClass ?? node.type) === type);
    steps.loaded = [fidelity(loaded("GFPGANFaceRestore")), fidelity(loaded("GFPGANRestoreFaces"))];
    pick(loaded("GFPGANModelLoader"), gfpgan);
    await settle();
    steps.loaded_then_gfpgan = [fidelity(loaded("GFPGANFaceRestore")), fidelity(loaded("GFPGANRestoreFaces"))];
    return steps;
  }, { gfpgan, codeformer });
  console.log(JSON.stringify({ ...steps, errors, startup }));
} finally {
  await browser.close();
}
