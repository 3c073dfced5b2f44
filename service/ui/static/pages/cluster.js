// Cluster: ring members, who owns which config, the last reshards and the handoffs they made.
import { agent, ago, badge, emptyBox, errorBox, every, h } from "../lib.js";

function members(ring) {
  return h("div", { class: "panel" },
    h("h2", {}, "Members"),
    h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Table (scrolls sideways)" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Node"), h("th", {}, "State"), h("th", {}, "Address"),
        h("th", {}, "Last heartbeat"), h("th", { class: "num" }, "Configs owned"))),
      h("tbody", {}, ring.members.map((m) => h("tr", { "data-node": m.id },
        h("td", {}, m.id, m.id === ring.self ? h("span", { class: "muted" }, " (this node)") : null),
        h("td", {}, badge(m.state)),
        h("td", {}, h("code", {}, m.address)),
        h("td", {}, ago(m.heartbeat * 1000)),
        h("td", { class: "num" }, m.owned)))))));
}

function ownership(ring, filter) {
  const rows = ring.configs.filter((c) => !filter || c.name.includes(filter) || c.owner.includes(filter));
  const table = rows.length ? h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Table (scrolls sideways)" }, h("table", { id: "ownership" },
    h("thead", {}, h("tr", {}, h("th", {}, "Config"), h("th", {}, "Owner"), h("th", {}, "Running on"),
      h("th", {}, "State"))),
    h("tbody", {}, rows.slice(0, 500).map((c) => h("tr", { "data-config": c.name },
      h("td", {}, h("a", { href: `#/configs/${encodeURIComponent(c.name)}` }, c.name)),
      h("td", { class: "owner" }, c.owner || "–"),
      h("td", {}, c.running_on || "–"),
      h("td", {}, c.failed ? badge("failed") : c.running ? badge("running", "yes") : badge("pending")))))))
    : emptyBox(ring.configs.length ? "No config matches the filter." : "No configs stored yet. Add one on the Configs page.");
  return table;
}

function reshards(ring) {
  const list = ring.reshards || [];
  if (!list.length) return emptyBox("No reshard recorded by this node yet.");
  return h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Table (scrolls sideways)" }, h("table", {},
    h("thead", {}, h("tr", {}, h("th", {}, "When"), h("th", {}, "Trigger"), h("th", { class: "num" }, "Took"),
      h("th", {}, "Started here"), h("th", {}, "Stopped here"), h("th", {}, "Result"))),
    h("tbody", {}, list.slice().reverse().map((r) => h("tr", {},
      h("td", {}, ago(r.at * 1000)), h("td", {}, r.trigger || "–"),
      h("td", { class: "num" }, `${(r.duration_seconds * 1000).toFixed(0)} ms`),
      h("td", {}, (r.started_names || []).join(", ") || "–"),
      h("td", {}, (r.stopped_names || []).join(", ") || "–"),
      h("td", {}, r.ok ? badge("ok", "yes") : badge(r.error || "failed", "no")))))));
}

function timeline(ring) {
  const moves = (ring.reshards || []).filter((r) => (r.started_names || []).length || (r.stopped_names || []).length);
  if (!moves.length) return emptyBox("No handoff seen by this node yet.");
  return h("ol", { class: "timeline" }, moves.slice(-20).reverse().map((r) => h("li", {},
    h("strong", {}, new Date(r.at * 1000).toLocaleTimeString()), " ",
    (r.started_names || []).length ? `took over ${r.started_names.join(", ")}` : "",
    (r.started_names || []).length && (r.stopped_names || []).length ? "; " : "",
    (r.stopped_names || []).length ? `handed off ${r.stopped_names.join(", ")}` : "",
    h("span", { class: "muted" }, ` (${r.trigger || "reshard"})`))));
}

export async function render(root) {
  let filter = "";
  const body = h("div", { id: "cluster-body" }, h("p", { class: "muted" }, "Loading the ring…"));
  const filterInput = h("input", { type: "search", placeholder: "config or node", "aria-label": "Filter configs",
    oninput: (e) => { filter = e.target.value.trim(); load(); } });
  root.append(h("h1", {}, "Cluster"), body);
  let last = null;
  async function load() {
    try {
      last = await agent("/agent/api/v1/cluster/ring");
    } catch (err) {
      body.replaceChildren(err.status === 404
        ? emptyBox("This node runs without the scraping service (no ring): its configs come from its own file.")
        : errorBox(err, "Cannot read the ring"));
      return;
    }
    const ring = last;
    body.replaceChildren(
      members(ring),
      h("div", { class: "panel" }, h("h2", {}, "Config ownership"),
        h("div", { class: "toolbar" }, h("label", {}, "Filter", filterInput)), ownership(ring, filter)),
      h("div", { class: "grid" },
        h("div", { class: "panel" }, h("h2", {}, "Last reshards on this node"), reshards(ring)),
        h("div", { class: "panel" }, h("h2", {}, "Handoff timeline"), timeline(ring))));
    if (document.activeElement !== filterInput && filter) filterInput.value = filter;
  }
  await load();
  return every(3000, load);
}
