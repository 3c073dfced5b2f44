// Pipelines: per node and instance, the WAL and every remote_write queue; the Loki clients and search store.
import { agent, badge, emptyBox, errorBox, every, fmtBytes, fmtNum, h, partialBox } from "../lib.js";

function remoteRow(r) {
  const failing = (r.samples_failed || 0) > 0;
  const retrying = (r.samples_retried || 0) > 0 && !(r.samples_sent > 0);
  const stateBadge = failing ? badge("failing", "failed") : retrying ? badge("retrying", "pending") : badge("ok", "yes");
  return h("tr", { class: "remote" },
    h("td", {}, r.remote_name, h("div", { class: "muted mono" }, r.url)),
    h("td", {}, stateBadge),
    h("td", { class: "num" }, fmtNum(r.samples_sent)), h("td", { class: "num" }, fmtNum(r.samples_failed)),
    h("td", { class: "num" }, fmtNum(r.samples_retried)), h("td", { class: "num" }, fmtNum(r.samples_dropped)),
    h("td", { class: "num" }, fmtNum(r.samples_pending)),
    h("td", { class: "num" }, `${fmtNum(r.shards)} / ${fmtNum(r.shards_desired)} / ${fmtNum(r.shards_max)}`),
    h("td", { class: "num" }, r.lag_seconds === null || r.lag_seconds === undefined ? "–" : `${r.lag_seconds.toFixed(1)} s`));
}

function instanceCard(node, m) {
  return h("section", { class: "panel", "aria-label": `${m.instance} on ${node}` },
    h("h2", {}, m.instance, h("span", { class: "muted" }, ` on ${node}`)),
    h("div", { class: "grid" },
      h("div", {}, h("div", { class: "muted" }, "WAL size"), h("div", { class: "stat" }, fmtBytes(m.wal.size_bytes))),
      h("div", {}, h("div", { class: "muted" }, "Current segment"), h("div", { class: "stat" }, fmtNum(m.wal.segment_current))),
      h("div", {}, h("div", { class: "muted" }, "Samples in"), h("div", { class: "stat" }, fmtNum(m.wal.samples_appended))),
      h("div", {}, h("div", { class: "muted" }, "Corruptions / failed writes"),
        h("div", { class: "stat" }, `${fmtNum(m.wal.corruptions || 0)} / ${fmtNum(m.wal.writes_failed || 0)}`))),
    m.remotes.length ? h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Table (scrolls sideways)" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "remote_write"), h("th", {}, "State"), h("th", { class: "num" }, "Sent"),
        h("th", { class: "num" }, "Failed"), h("th", { class: "num" }, "Retried"), h("th", { class: "num" }, "Dropped"),
        h("th", { class: "num" }, "Pending"), h("th", { class: "num" }, "Shards now/wanted/max"), h("th", { class: "num" }, "Lag"))),
      h("tbody", {}, m.remotes.map(remoteRow)))) : h("p", { class: "muted" }, "No remote_write endpoint."));
}

export async function render(root) {
  const body = h("div", { id: "pipelines-body" }, h("p", { class: "muted" }, "Loading pipelines…"));
  root.append(h("h1", {}, "Pipelines"), body);
  async function load() {
    let data;
    try {
      data = await agent("/ui/api/pipelines");
    } catch (err) {
      body.replaceChildren(errorBox(err, "Cannot read pipelines"));
      return;
    }
    const cards = data.nodes.flatMap((n) => n.metrics.map((m) => instanceCard(n.node, m)));
    const loki = data.nodes.flatMap((n) => n.loki_clients.map((c) => ({ node: n.node, ...c })));
    const search = data.nodes.flatMap((n) => n.search.map((s) => ({ node: n.node, ...s })));
    const logWals = data.nodes.flatMap((n) => (n.logs_wals || []).map((w) => ({ node: n.node, ...w })));
    body.replaceChildren(
      partialBox(data.missingNodes) || "",
      h("h2", {}, "Metrics"),
      cards.length ? h("div", {}, cards) : emptyBox("No metrics instance runs on any node."),
      h("h2", {}, "Logs WALs"),
      logWals.length ? h("div", { class: "panel table-wrap", tabindex: "0", role: "region", "aria-label": "Table (scrolls sideways)" }, h("table", {},
        h("thead", {}, h("tr", {}, h("th", {}, "Node"), h("th", {}, "Logs instance"), h("th", { class: "num" }, "Size"),
          h("th", { class: "num" }, "Pushes appended"), h("th", { class: "num" }, "Failed writes"))),
        h("tbody", {}, logWals.map((w) => h("tr", {}, h("td", {}, w.node), h("td", {}, w.instance),
          h("td", { class: "num" }, fmtBytes(w.wal.size_bytes)), h("td", { class: "num" }, fmtNum(w.wal.records_appended || 0)),
          h("td", { class: "num" }, fmtNum(w.wal.writes_failed || 0)))))))
        : emptyBox("No logs instance runs on any node."),
      h("h2", {}, "Loki clients"),
      loki.length ? h("div", { class: "panel table-wrap", tabindex: "0", role: "region", "aria-label": "Table (scrolls sideways)" }, h("table", {},
        h("thead", {}, h("tr", {}, h("th", {}, "Node"), h("th", {}, "Loki"), h("th", {}, "Tenant"),
          h("th", { class: "num" }, "Sent"), h("th", { class: "num" }, "Dropped"), h("th", { class: "num" }, "Retries"))),
        h("tbody", {}, loki.map((c) => h("tr", {}, h("td", {}, c.node), h("td", {}, h("code", {}, c.host)),
          h("td", {}, c.tenant || "–"), h("td", { class: "num" }, fmtNum(c.sent_entries)),
          h("td", { class: "num" }, fmtNum(c.dropped_entries)), h("td", { class: "num" }, fmtNum(c.batch_retries)))))))
        : emptyBox("No Loki client has sent anything yet."),
      h("h2", {}, "Search stores"),
      search.length ? h("div", { class: "panel table-wrap", tabindex: "0", role: "region", "aria-label": "Table (scrolls sideways)" }, h("table", {},
        h("thead", {}, h("tr", {}, h("th", {}, "Node"), h("th", {}, "Instance"), h("th", { class: "num" }, "Indexed"),
          h("th", { class: "num" }, "Read ahead"), h("th", { class: "num" }, "Lag"), h("th", { class: "num" }, "Skipped"),
          h("th", {}, "Writer"), h("th", { class: "num" }, "Size"))),
        h("tbody", {}, search.map((s) => h("tr", {}, h("td", {}, s.node), h("td", {}, s.instance),
          h("td", { class: "num" }, fmtNum(s.written_entries)), h("td", { class: "num" }, fmtNum(s.queued_entries)),
          h("td", { class: "num" }, s.lag_seconds === undefined ? "–" : `${s.lag_seconds.toFixed(1)} s`),
          h("td", { class: "num" }, fmtNum(s.skipped_entries || 0)),
          h("td", {}, s.writer_up === 0 ? badge("restarting", "failed") : badge("up")),
          h("td", { class: "num" }, fmtBytes(s.store_bytes)))))))
        : emptyBox("No search store has indexed anything yet."));
  }
  await load();
  return every(5000, load);
}
