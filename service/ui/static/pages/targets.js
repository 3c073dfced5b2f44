// Targets: every node's scrape targets by instance and job, with the last error and both label sets.
import { agent, ago, badge, emptyBox, errorBox, every, h, partialBox } from "../lib.js";

function labels(obj) {
  return h("ul", { class: "kv" }, Object.entries(obj || {}).sort().map(([k, v]) => h("li", {}, `${k}="${v}"`)));
}

export async function render(root, rest, params) {
  const state = { text: params.get("q") || "", health: params.get("state") || "", node: "" };
  const body = h("div", { id: "targets-body" }, h("p", { class: "muted" }, "Loading targets…"));
  const summary = h("p", { class: "muted", id: "targets-summary" });
  const nodeSelect = h("select", { "aria-label": "Node", onchange: (e) => { state.node = e.target.value; draw(); } },
    h("option", { value: "" }, "all nodes"));
  const open = new Set();
  let data = null;
  root.append(h("h1", {}, "Targets"),
    h("div", { class: "toolbar" },
      h("label", {}, "Search", h("input", { type: "search", value: state.text, id: "target-filter",
        placeholder: "endpoint, job, label, error", oninput: (e) => { state.text = e.target.value.trim(); draw(); } })),
      h("label", {}, "State", h("select", { id: "target-state", onchange: (e) => { state.health = e.target.value; draw(); } },
        ["", "up", "down", "unknown"].map((s) => h("option", { value: s, selected: s === state.health }, s || "any")))),
      h("label", {}, "Node", nodeSelect)),
    summary, body);

  function matches(t) {
    if (state.health && t.state !== state.health) return false;
    if (state.node && t.node !== state.node) return false;
    if (!state.text) return true;
    const hay = [t.endpoint, t.instance, t.target_group, t.scrape_error, JSON.stringify(t.labels)].join(" ");
    return hay.toLowerCase().includes(state.text.toLowerCase());
  }

  function draw() {
    if (!data) return;
    const shown = data.targets.filter(matches);
    const down = data.targets.filter((t) => t.state === "down").length;
    summary.textContent = `${data.targets.length} targets on ${new Set(data.targets.map((t) => t.node)).size || 0} nodes, ${down} down; ${shown.length} shown`;
    const nodes = [...new Set(data.targets.map((t) => t.node))].sort();
    if (nodeSelect.options.length !== nodes.length + 1) {
      nodeSelect.replaceChildren(h("option", { value: "" }, "all nodes"), nodes.map((n) => h("option", { value: n }, n)));
      nodeSelect.value = state.node;
    }
    if (!shown.length) {
      body.replaceChildren(partialBox(data.missingNodes) || "", emptyBox(data.targets.length
        ? "No target matches the filters." : "No targets: no running config has discovered any yet."));
      return;
    }
    const groups = new Map();
    for (const t of shown) {
      const key = `${t.instance} / ${t.target_group}`;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(t);
    }
    body.replaceChildren(partialBox(data.missingNodes) || "", ...[...groups.entries()].sort().map(([key, ts]) => {
      const up = ts.filter((t) => t.state === "up").length;
      return h("section", { class: "panel", "aria-label": key },
        h("h2", {}, key, h("span", { class: "muted" }, ` (${up}/${ts.length} up)`)),
        h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Table (scrolls sideways)" }, h("table", {},
          h("thead", {}, h("tr", {}, h("th", {}, "Endpoint"), h("th", {}, "State"), h("th", {}, "Node"),
            h("th", {}, "Last scrape"), h("th", { class: "num" }, "Duration"), h("th", {}, "Error"), h("th", {}, "Labels"))),
          h("tbody", {}, ts.map((t) => {
            const id = `${t.node}|${t.instance}|${t.endpoint}`;
            const rows = [h("tr", { class: "target", "data-state": t.state },
              h("td", {}, h("code", {}, t.endpoint)), h("td", {}, badge(t.state)), h("td", {}, t.node),
              h("td", {}, ago(t.last_scrape)), h("td", { class: "num" }, `${t.scrape_duration_ms ?? 0} ms`),
              h("td", { class: "scrape-error" }, t.scrape_error || ""),
              h("td", {}, h("button", { type: "button", class: "ghost", "aria-expanded": open.has(id) ? "true" : "false",
                onclick: () => { if (open.has(id)) open.delete(id); else open.add(id); draw(); } },
                open.has(id) ? "Hide" : "Show")))];
            if (open.has(id)) {
              rows.push(h("tr", {}, h("td", { colspan: 7 }, h("div", { class: "labels" },
                h("div", {}, h("strong", {}, "Discovered labels"), labels(t.discovered_labels)),
                h("div", {}, h("strong", {}, "Final labels"), labels(t.labels))))));
            }
            return rows;
          })))));
    }));
  }

  async function load() {
    try {
      data = await agent("/ui/api/targets");
      draw();
    } catch (err) {
      body.replaceChildren(errorBox(err, "Cannot read targets"));
    }
  }
  await load();
  return every(5000, load);
}
