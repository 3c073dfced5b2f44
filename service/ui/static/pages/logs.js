// Logs: search with a time range, container and stream; a histogram whose drag zooms; paged, highlighted
// results; sources with counts; a live tail; and the chat over the same logs.
import { emptyBox, errorBox, fmtTime, h, highlight, partialBox, search } from "../lib.js";

const RANGES = [["15m", 15], ["1h", 60], ["6h", 360], ["24h", 1440], ["7d", 10080]];
const PAGE = 50;

function toLocalInput(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}

export async function render(root, rest, params) {
  const state = {
    query: params.get("q") || "", container: params.get("container") || "", stream: "", range: "1h",
    from: null, to: null, offset: 0,
  };
  let stopTail = null;

  const queryInput = h("input", { type: "search", id: "log-query", value: state.query, placeholder: "words to find",
    "aria-label": "Search words" });
  const rangeSelect = h("select", { id: "log-range", "aria-label": "Time range" },
    RANGES.map(([label]) => h("option", { value: label, selected: label === state.range }, `last ${label}`)),
    h("option", { value: "custom" }, "custom"));
  const fromInput = h("input", { type: "datetime-local", id: "log-from", "aria-label": "From" });
  const toInput = h("input", { type: "datetime-local", id: "log-to", "aria-label": "To" });
  const containerSelect = h("select", { id: "log-container", "aria-label": "Container" }, h("option", { value: "" }, "all"));
  const streamSelect = h("select", { id: "log-stream", "aria-label": "Stream" },
    ["", "stdout", "stderr"].map((s) => h("option", { value: s }, s || "both")));
  const form = h("form", { class: "toolbar", role: "search", id: "log-form" },
    h("label", {}, "Search", queryInput), h("label", {}, "Range", rangeSelect),
    h("label", {}, "From", fromInput), h("label", {}, "To", toInput),
    h("label", {}, "Container", containerSelect), h("label", {}, "Stream", streamSelect),
    h("button", { type: "submit", id: "log-search" }, "Search"));
  const total = h("p", { id: "log-total", class: "muted", "aria-live": "polite" }, " ");
  const notice = h("div", { id: "log-notice" });
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "hist");
  svg.setAttribute("id", "histogram");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "Matching lines over time; drag across it to zoom in");
  const histInfo = h("p", { class: "muted", id: "hist-info" }, " ");
  const results = h("div", { id: "log-results", style: "min-height: 12rem" });
  const pager = h("div", { class: "toolbar" },
    h("button", { type: "button", class: "ghost", id: "log-prev", onclick: () => page(-1) }, "Newer"),
    h("button", { type: "button", class: "ghost", id: "log-next", onclick: () => page(1) }, "Older"));
  const sources = h("ul", { class: "list", id: "log-containers", "aria-label": "Log sources" });
  const tailBox = h("div", { class: "tail", id: "tail", "aria-live": "polite" });
  const tailButton = h("button", { type: "button", class: "ghost", id: "live-tail", "aria-pressed": "false",
    onclick: () => toggleTail() }, "Follow new lines");
  const chatInput = h("textarea", { id: "chat-input", style: "min-height: 4rem", "aria-label": "Question about the logs",
    placeholder: "e.g. how many errors in the last hour?" });
  const chatOut = h("div", { id: "chat-answer", "aria-live": "polite" });

  root.append(h("h1", {}, "Logs"), form, notice,
    h("div", { class: "split" },
      h("aside", { class: "panel" }, h("h2", {}, "Sources"), sources),
      h("div", {},
        h("div", { class: "panel" },
          h("div", { class: "toolbar" }, total,
            h("button", { type: "button", class: "ghost", id: "zoom-out", onclick: () => zoomOut() }, "Zoom out")),
          svg, histInfo),
        h("div", { class: "panel" }, h("h2", {}, "Lines"), results, pager),
        h("div", { class: "panel" }, h("h2", {}, "Live tail"), tailButton, tailBox),
        h("div", { class: "panel" }, h("h2", {}, "Ask about the logs"),
          h("form", { id: "chat-form", onsubmit: (e) => { e.preventDefault(); ask(); } }, chatInput,
            h("div", { class: "toolbar" }, h("button", { type: "submit", id: "chat-ask" }, "Ask"))),
          chatOut))));

  function windowMs() {
    if (state.range === "custom" && state.from !== null && state.to !== null) return [state.from, state.to];
    const minutes = (RANGES.find(([l]) => l === state.range) || RANGES[1])[1];
    const now = Date.now();
    return [now - minutes * 60000, now];
  }

  function filterParams() {
    const [from, to] = windowMs();
    const p = new URLSearchParams({ fromTimestamp: String(Math.floor(from)), toTimestamp: String(Math.floor(to)) });
    if (state.query) p.set("query", state.query);
    if (state.container) p.set("container", state.container);
    if (state.stream) p.set("stream", state.stream);
    return p;
  }

  function readForm() {
    state.query = queryInput.value.trim();
    state.container = containerSelect.value;
    state.stream = streamSelect.value;
    state.range = rangeSelect.value;
    if (state.range === "custom") {
      const f = Date.parse(fromInput.value), t = Date.parse(toInput.value);
      if (Number.isFinite(f) && Number.isFinite(t) && f < t) { state.from = f; state.to = t; }
    }
  }

  function showWindow() {
    const [from, to] = windowMs();
    fromInput.value = toLocalInput(from);
    toInput.value = toLocalInput(to);
  }

  async function loadSources() {
    try {
      const { data } = await search("/api/logs/containers");
      containerSelect.replaceChildren(h("option", { value: "" }, "all"),
        data.map((c) => h("option", { value: c.name, selected: c.name === state.container }, c.name)));
      sources.replaceChildren(...(data.length ? data.map((c) => h("li", {}, h("button", {
        type: "button", "aria-current": c.name === state.container ? "true" : "false",
        onclick: () => { state.container = c.name === state.container ? "" : c.name; containerSelect.value = state.container; run(); } },
        `${c.name} `, h("span", { class: "muted" }, `(${c.count})`))))
        : [h("li", {}, emptyBox("No logs received yet."))]));
    } catch (err) {
      sources.replaceChildren(h("li", {}, errorBox(err, "Sources")));
    }
  }

  function drawHistogram(data) {
    const width = svg.clientWidth || 800, height = 140, pad = 18;
    const buckets = data.buckets;
    const max = Math.max(1, ...buckets.map((b) => b.count));
    const bw = (width - 2) / Math.max(1, buckets.length);
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const ns = "http://www.w3.org/2000/svg";
    const nodes = buckets.map((b, i) => {
      const r = document.createElementNS(ns, "rect");
      const bh = ((height - pad) * b.count) / max;
      r.setAttribute("class", "bar");
      r.setAttribute("x", String(1 + i * bw));
      r.setAttribute("width", String(Math.max(1, bw - 1)));
      r.setAttribute("y", String(height - pad - bh));
      r.setAttribute("height", String(bh));
      r.setAttribute("data-count", String(b.count));
      r.setAttribute("data-ts", String(b.timestamp));
      const title = document.createElementNS(ns, "title");
      title.textContent = `${fmtTime(b.timestamp)}: ${b.count}`;
      r.append(title);
      return r;
    });
    const label = (x, text, anchor) => {
      const t = document.createElementNS(ns, "text");
      t.setAttribute("x", String(x)); t.setAttribute("y", String(height - 4)); t.setAttribute("text-anchor", anchor);
      t.textContent = text;
      return t;
    };
    svg.replaceChildren(...nodes, label(2, fmtTime(data.fromTimestamp), "start"),
      label(width - 2, fmtTime(data.toTimestamp), "end"));
    svg.dataset.from = String(data.fromTimestamp);
    svg.dataset.to = String(data.toTimestamp);
    histInfo.textContent = `${buckets.length} buckets of ${data.bucket / 1000} s; drag across the chart to zoom in.`;
  }

  // Drag across the histogram: the selected span becomes the custom time range.
  let dragFrom = null;
  let selRect = null;
  const xAt = (e) => { const r = svg.getBoundingClientRect(); return Math.min(Math.max(e.clientX - r.left, 0), r.width); };
  svg.addEventListener("pointerdown", (e) => {
    dragFrom = xAt(e);
    svg.setPointerCapture(e.pointerId);
    selRect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    selRect.setAttribute("class", "sel"); selRect.setAttribute("y", "0"); selRect.setAttribute("height", "140");
    svg.append(selRect);
  });
  svg.addEventListener("pointermove", (e) => {
    if (dragFrom === null || !selRect) return;
    const scale = (svg.viewBox.baseVal?.width || svg.clientWidth) / svg.getBoundingClientRect().width;
    const x = xAt(e);
    selRect.setAttribute("x", String(Math.min(x, dragFrom) * scale));
    selRect.setAttribute("width", String(Math.abs(x - dragFrom) * scale));
  });
  svg.addEventListener("pointerup", (e) => {
    if (dragFrom === null) return;
    const x = xAt(e), w = svg.getBoundingClientRect().width;
    const a = Math.min(x, dragFrom) / w, b = Math.max(x, dragFrom) / w;
    dragFrom = null;
    const from = Number(svg.dataset.from), to = Number(svg.dataset.to);
    if (b - a < 0.01 || !Number.isFinite(from)) { selRect?.remove(); return; }
    state.range = "custom";
    rangeSelect.value = "custom";
    state.from = Math.floor(from + a * (to - from));
    state.to = Math.ceil(from + b * (to - from));
    run();
  });

  function zoomOut() {
    const [from, to] = windowMs();
    const span = to - from;
    state.range = "custom";
    rangeSelect.value = "custom";
    state.from = Math.max(0, from - span / 2);
    state.to = Math.min(Date.now(), to + span / 2);
    run();
  }

  async function loadPage() {
    const p = filterParams();
    p.set("limit", String(PAGE));
    p.set("offset", String(state.offset));
    try {
      const { data, missing } = await search(`/api/logs/search?${p}`);
      total.textContent = `${data.total} matching lines`;
      notice.replaceChildren(partialBox(missing) || "");
      results.replaceChildren(...(data.logs.length ? data.logs.map((e) => h("div", { class: "log" },
        h("div", { class: "meta" }, h("span", {}, fmtTime(e.timestamp)), h("span", {}, e.container || "–"),
          h("span", {}, e.stream || ""), e.node ? h("span", {}, `node ${e.node}`) : null),
        h("div", { class: "msg" }, highlight(e.message, state.query))))
        : [emptyBox(data.total ? "No more lines on this page." : "No line matches. Widen the time range or change the words.")]));
      document.getElementById("log-prev").disabled = state.offset === 0;
      document.getElementById("log-next").disabled = state.offset + PAGE >= Math.min(data.total, 10000);
    } catch (err) {
      results.replaceChildren(errorBox(err, "Search failed"));
    }
  }

  async function loadHistogram() {
    try {
      const { data } = await search(`/api/logs/histogram?${filterParams()}`);
      drawHistogram(data);
    } catch (err) {
      histInfo.replaceChildren(errorBox(err, "Histogram failed"));
    }
  }

  function page(step) {
    state.offset = Math.max(0, state.offset + step * PAGE);
    loadPage();
  }

  async function run() {
    state.offset = 0;
    showWindow();
    await Promise.all([loadPage(), loadHistogram()]);
  }

  function toggleTail() {
    if (stopTail) {
      stopTail();
      stopTail = null;
      tailButton.setAttribute("aria-pressed", "false");
      tailButton.textContent = "Follow new lines";
      return;
    }
    tailButton.setAttribute("aria-pressed", "true");
    tailButton.textContent = "Stop following";
    tailBox.replaceChildren(h("p", { class: "muted" }, "Waiting for new lines…"));
    const seen = new Set();
    let since = Date.now() - 5000;
    let first = true;
    const poll = async () => {
      const p = new URLSearchParams({ fromTimestamp: String(since), limit: "100", toTimestamp: String(Date.now() + 60000) });
      if (state.query) p.set("query", state.query);
      if (state.container) p.set("container", state.container);
      if (state.stream) p.set("stream", state.stream);
      try {
        const { data } = await search(`/api/logs/search?${p}`);
        const fresh = data.logs.filter((e) => !seen.has(`${e.node || ""}|${e.id}`)).reverse();
        if (fresh.length && first) tailBox.replaceChildren();
        first = first && !fresh.length;
        for (const e of fresh) {
          seen.add(`${e.node || ""}|${e.id}`);
          since = Math.max(since, e.timestamp);
          tailBox.append(h("div", { class: "log tail-line" }, h("div", { class: "meta" }, fmtTime(e.timestamp), " ",
            e.container || ""), h("div", { class: "msg" }, highlight(e.message, state.query))));
        }
        while (tailBox.children.length > 500) tailBox.firstChild.remove();
        if (fresh.length) tailBox.scrollTop = tailBox.scrollHeight;
      } catch (err) {
        tailBox.append(errorBox(err, "Tail"));
      }
    };
    poll();
    const id = setInterval(poll, 1500);
    stopTail = () => clearInterval(id);
  }

  async function ask() {
    const content = chatInput.value.trim();
    if (!content) return;
    chatOut.replaceChildren(h("p", { class: "muted" }, "Thinking…"));
    try {
      const { data } = await search("/api/chat", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ messages: [{ role: "user", content }] }) });
      chatOut.replaceChildren(h("div", { class: "chat-answer" }, data.answer),
        h("details", {}, h("summary", {}, `${data.toolCalls.length} tool calls (${data.mode})`),
          h("pre", {}, JSON.stringify(data.toolCalls, null, 2))));
    } catch (err) {
      chatOut.replaceChildren(errorBox(err, "Chat failed"));
    }
  }

  form.addEventListener("submit", (e) => { e.preventDefault(); readForm(); run(); });
  rangeSelect.addEventListener("change", () => { readForm(); if (state.range !== "custom") run(); });
  await loadSources();
  await run();
  return () => { if (stopTail) stopTail(); };
}
