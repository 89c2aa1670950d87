// Builds the UI-format workflows in workflows/ from the API-format graphs in tests/api_workflows/
// inside a running ComfyUI (so the frontend itself lays them out and serialises them), checks that
// each loads back without missing nodes, and takes a screenshot of each for the README.
//
//   node scripts/render_workflows.mjs http://127.0.0.1:8188 [WORKFLOW_NAME...]
// Needs: npm install playwright-core (set NODE_PATH to its node_modules), Debian's chromium.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const { chromium } = createRequire(import.meta.url)("playwright-core"); // honours NODE_PATH

const base = process.argv[2] ?? "http://127.0.0.1:8188";
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const sources = path.join(root, "tests", "api_workflows");
const models = JSON.parse(fs.readFileSync(path.join(sources, "models.json"), "utf8"));

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
await page.goto(base);
await page.waitForFunction(() => window.app?.graph !== undefined, null, { timeout: 60000 });
await page.evaluate(async () => {
  await window.app.extensionManager.setting.set("Comfy.TutorialCompleted", true);
  await window.app.extensionManager.setting.set("Comfy.Workflow.Persist", false); // no tabs carried over
});

const only = process.argv.slice(3); // optional workflow names: rebuild just those
for (const file of fs.readdirSync(sources).filter((f) => f.startsWith("gfpgan_") && f.endsWith(".json"))) {
  if (only.length && !only.includes(file.replace(/\.json$/, ""))) continue;
  const name = file.replace(/\.json$/, "");
  const api = JSON.parse(fs.readFileSync(path.join(sources, file), "utf8"));
  await page.reload(); // one workflow per page load, so the screenshot shows only its own tabs
  await page.waitForFunction(() => window.app?.graph !== undefined, null, { timeout: 60000 });
  await page.keyboard.press("Escape");
  const workflow = await page.evaluate(async (api) => {
    await window.app.loadApiJson(api, "workflow");
    window.app.graph.arrange(80);
    // The frontend gives every 'seed' widget a 'control after generate' widget that defaults to
    // randomize; ours only matters for noise 'seeded', so ship it fixed (re-runs stay cached).
    for (const node of window.app.graph._nodes.filter((n) => n.type.startsWith("GFPGAN"))) {
      for (const widget of node.widgets ?? []) if (widget.name === "control_after_generate") widget.value = "fixed";
    }
    return window.app.graph.serialize();
  }, api);
  const used = new Set(Object.values(api).flatMap((n) => Object.values(n.inputs)));
  workflow.models = models.filter((m) => used.has(m.name));
  fs.writeFileSync(path.join(root, "workflows", file), JSON.stringify(workflow, null, 2) + "\n");

  // Load the UI file back as a user would, and check it.
  const check = await page.evaluate(async (workflow) => {
    await window.app.loadGraphData(workflow);
    const missing = [...document.querySelectorAll(".p-dialog")].map((d) => d.innerText).filter((t) => /missing/i.test(t));
    const prompt = (await window.app.graphToPrompt()).output;
    return { missing, prompt };
  }, workflow);
  const widgets = (inputs) => JSON.stringify(Object.entries(inputs).filter(([, v]) => !Array.isArray(v)).sort());
  const roundTrip = Object.values(check.prompt).map((n) => n.class_type + widgets(n.inputs));
  for (const [id, node] of Object.entries(api)) {
    if (!roundTrip.includes(node.class_type + widgets(node.inputs))) {
      throw new Error(`${name}: node ${id} (${node.class_type}) lost or changed widget values in the round trip`);
    }
  }
  if (roundTrip.length !== Object.keys(api).length) throw new Error(`${name}: node count changed`);
  const nodeDialogs = check.missing.filter((t) => /node/i.test(t));
  if (nodeDialogs.length) throw new Error(`${name}: missing nodes: ${nodeDialogs.join(" | ")}`);
  await page.keyboard.press("Escape");
  await page.keyboard.press("Escape");
  await page.evaluate(() => {
    const canvas = window.app.canvas;
    const nodes = window.app.graph._nodes;
    const minX = Math.min(...nodes.map((n) => n.pos[0])), minY = Math.min(...nodes.map((n) => n.pos[1]));
    const maxX = Math.max(...nodes.map((n) => n.pos[0] + n.size[0])), maxY = Math.max(...nodes.map((n) => n.pos[1] + n.size[1]));
    const scale = Math.min(1.1, 1500 / (maxX - minX + 100), 760 / (maxY - minY + 140));
    canvas.ds.scale = scale;
    canvas.ds.offset = [-minX + 40 / scale, -minY + 60 / scale];
    canvas.setDirty(true, true);
  });
  await page.waitForTimeout(800);
  await page.screenshot({ path: path.join(root, "docs", `${name}.png`) });
  console.log(`${name}: ${workflow.nodes.length} nodes, ${workflow.links.length} links, ok`);
}
await browser.close();
