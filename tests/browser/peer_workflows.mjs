// Opens a workflow saved by another face-restore pack (facerestore_cf, ReActor) in a real ComfyUI frontend where
// that pack is not installed, as a user would, and prints what happened (one JSON object on stdout;
// tests/test_comfyui_e2e.py checks it):
//   - the node types after loading, and whether the frontend said nodes were missing (its dialog) and which;
//   - where the frontend offers node replacement (1.42 on: the dialog's "Quick Fix Available" list), the click
//     on its "Replace Selected" button, as a user would do it, and the types after that;
//   - the widget values and titles of the nodes that had a peer's type, beside the saved ones;
//   - the run: queued as the Queue button does (app.queuePrompt), waited for on /history, its status and images.
//
//   node tests/browser/peer_workflows.mjs http://127.0.0.1:8188 WORKFLOW.json [OLD=NEW ...]
// OLD=NEW: a widget value of the saved workflow to change before loading it (its image and model file names, to
// the test's files). Needs playwright-core (on NODE_PATH) and Debian's chromium.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const { chromium } = createRequire(import.meta.url)("playwright-core"); // honours NODE_PATH
const [base, workflowPath, ...substitutions] = process.argv.slice(2);
const renames = Object.fromEntries(substitutions.map((pair) => [pair.slice(0, pair.indexOf("=")), pair.slice(pair.indexOf("=") + 1)]));

const workflow = JSON.parse(readFileSync(workflowPath, "utf8"));
for (const node of workflow.nodes) {
  if (Array.isArray(node.widgets_values)) {
    node.widgets_values = node.widgets_values.map((value) => (typeof value === "string" && value in renames ? renames[value] : value));
  }
}
const savedTypes = Object.fromEntries(workflow.nodes.map((node) => [node.id, node.type]));

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
const report = {};
try {
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  const errors = [];
  const consoleLines = [];
  page.on("pageerror", (error) => errors.push(String(error.stack ?? error).split("\n").slice(0, 4).join(" | ")));
  page.on("console", (message) => {
    if (/GFPGAN|replace/i.test(message.text())) consoleLines.push(`${message.type()}: ${message.text()}`.slice(0, 400));
  });
  await page.goto(base);
  await page.waitForFunction(() => window.app?.graph !== undefined && window.LiteGraph, null, { timeout: 60000 });
  await page.waitForTimeout(3000);
  const startup = errors.splice(0); // the frontend's own start-up (0.3.64's throws in a setting's onChange)
  report.frontend = await page.evaluate(() => window.__COMFYUI_FRONTEND_VERSION__ ?? null);
  report.server_node_replacements = await page.evaluate(async (types) => {
    const response = await fetch("/node_replacements");
    if (!response.ok) return null;
    const table = await response.json();
    return types.filter((type) => type in table);
  }, Object.values(savedTypes));
  // Whatever the frontend opened on its own at start (a template browser, a tip) is closed, as a user would.
  await page.keyboard.press("Escape");
  await page.waitForTimeout(500);

  // What the frontend hands extensions after configuring a graph: the node types it found missing.
  await page.evaluate(() => {
    window.__peerProbe = { missing: null };
    window.app.registerExtension({
      name: "comfyui_gfpgan.tests.peerWorkflowsProbe",
      afterConfigureGraph(missing) {
        window.__peerProbe.missing = (missing ?? []).map((entry) => (typeof entry === "string" ? entry : entry.type));
      },
    });
  });

  const graphState = () => page.evaluate(() => {
    const { app, LiteGraph } = window;
    const graph = app.rootGraph ?? app.graph;
    const nodes = graph.serialize().nodes;
    return {
      types: Object.fromEntries(nodes.map((node) => [node.id, node.type])),
      missing: nodes.filter((node) => !(node.type in LiteGraph.registered_node_types)).map((node) => node.type),
      nodes: Object.fromEntries(nodes.map((node) => [node.id, { title: node.title ?? null, widgets_values: node.widgets_values ?? null }])),
      links: graph.serialize().links.length,
      // links whose two ends do not both hold them (a node swapped in without its output links, say)
      broken_links: graph.serialize().links.filter(([id, from, fromSlot, to, toSlot]) => {
        const origin = graph.getNodeById(from), target = graph.getNodeById(to);
        return !origin?.outputs?.[fromSlot]?.links?.includes(id) || target?.inputs?.[toSlot]?.link !== id;
      }).map(([id]) => id),
    };
  });
  // The missing-nodes dialog (every frontend from 1.2x to 1.42 gives its content the class comfy-missing-nodes).
  const dialog = page.locator(".p-dialog:has(.comfy-missing-nodes)");
  const dialogState = async () => {
    if (!(await dialog.count())) return { shown: false, named: [] };
    const text = await dialog.first().innerText();
    return { shown: true, named: Object.values(savedTypes).filter((type, i, all) => all.indexOf(type) === i && text.includes(type)), text: text.slice(0, 1500) };
  };

  await page.evaluate((workflow) => window.app.loadGraphData(workflow), workflow);
  await page.waitForTimeout(2500);
  report.loaded = { ...(await graphState()), missing_reported: await page.evaluate(() => window.__peerProbe.missing), dialog: await dialogState() };

  // The quick fix, where the frontend offers it: its "Replace Selected (n)" button (all replaceable rows start
  // selected), clicked with the mouse.
  const replace = dialog.locator("button", { hasText: /Replace Selected/i });
  report.quick_fix = { offered: report.loaded.dialog.shown && (await replace.count()) > 0 };
  if (report.quick_fix.offered) {
    report.quick_fix.button = (await replace.first().innerText()).trim();
    await replace.first().click();
    await page.waitForTimeout(1500);
    report.quick_fix.dialog_after = await dialogState();
    report.quick_fix.toasts = await page.locator(".p-toast-message").allInnerTexts();
  }
  if ((await dialog.count()) > 0) { // a dialog with nothing to fix: closed as the user would
    await page.keyboard.press("Escape");
    await page.waitForTimeout(500);
  }
  report.after = await graphState();
  report.toasts = await page.locator(".p-toast-message").allInnerTexts();
  report.saved = Object.fromEntries(workflow.nodes.map((node) => [node.id, {
    type: node.type, title: node.title ?? null, widgets_values: node.widgets_values ?? null,
  }]));

  // Queue it, as the Queue button does; the prompt the frontend posts answers with its id.
  const posted = page.waitForResponse((response) => response.url().endsWith("/prompt") && response.request().method() === "POST", { timeout: 60000 });
  await page.evaluate(() => window.app.queuePrompt(0, 1));
  const response = await posted;
  const answer = await response.json().catch(() => null);
  report.run = { http_status: response.status(), prompt_id: answer?.prompt_id ?? null, error: answer?.error ?? null, node_errors: answer?.node_errors ?? null };
  if (report.run.prompt_id) {
    const deadline = Date.now() + 240000;
    while (Date.now() < deadline) {
      const entry = await page.evaluate(async (id) => (await (await fetch(`/history/${id}`)).json())[id] ?? null, report.run.prompt_id);
      if (entry?.status?.completed !== undefined && (entry.status.completed || entry.status.status_str === "error")) {
        report.run.status = entry.status.status_str;
        report.run.images = Object.values(entry.outputs ?? {}).flatMap((output) => output.images ?? [])
          .filter((image) => image.type === "output").map((image) => `${image.subfolder ? `${image.subfolder}/` : ""}${image.filename}`);
        if (entry.status.status_str !== "success") {
          report.run.messages = JSON.stringify(entry.status.messages).slice(-2000);
        }
        break;
      }
      await page.waitForTimeout(1000);
    }
    report.run.status ??= "timeout";
  }
  report.console = consoleLines;
  report.errors = errors;
  report.startup = startup;
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
