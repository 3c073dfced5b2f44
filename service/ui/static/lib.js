// Shared helpers: API calls in both envelopes, element building without innerHTML, formatting.

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// The agent envelope: {"status": "success", "data": ...} / {"status": "error", "data": {"error": ...}}.
export async function agent(path, options = {}) {
  const resp = await fetch(path, { credentials: "same-origin", ...options });
  const text = await resp.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { /* plain text answers */ }
  if (!resp.ok) {
    const message = body?.data?.error || body?.error || text.trim() || `HTTP ${resp.status}`;
    throw new ApiError(resp.status, message);
  }
  return body?.data;
}

// The log search envelope: {"success": true, "data": ...} / {"success": false, "error", "code"}.
export async function search(path, options = {}) {
  const resp = await fetch(path, { credentials: "same-origin", ...options });
  let body = null;
  try { body = await resp.json(); } catch { /* not JSON */ }
  if (!resp.ok || !body?.success) {
    throw new ApiError(resp.status, body?.error || `HTTP ${resp.status}`);
  }
  return { data: body.data, partial: body.partial ?? body.data?.partial, missing: body.missingNodes ?? body.data?.missingNodes };
}

// h("div", {class: "x", onclick: fn}, child, ...): children are nodes or text (never parsed as HTML).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function errorBox(err, what) {
  return h("div", { class: "alert error", role: "alert" }, `${what}: ${err.message || err}`);
}

export function emptyBox(text) {
  return h("div", { class: "empty" }, text);
}

export function badge(text, kind = text) {
  return h("span", { class: `badge ${kind}` }, text);
}

export function partialBox(missing) {
  if (!missing || !missing.length) return null;
  return h("div", { class: "alert warn", role: "status" },
    `Partial answer: no reply in time from ${missing.join(", ")}. Counts leave their share out.`);
}

export function ago(iso) {
  if (!iso) return "never";
  const t = typeof iso === "number" ? iso : Date.parse(iso);
  if (!Number.isFinite(t) || t <= 0) return "never";
  const s = Math.max(0, (Date.now() - t) / 1000);
  if (s < 60) return `${s.toFixed(0)} s ago`;
  if (s < 3600) return `${(s / 60).toFixed(0)} min ago`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h ago`;
  return `${(s / 86400).toFixed(1)} d ago`;
}

export function fmtTime(ms) {
  return new Date(ms).toISOString().replace("T", " ").replace("Z", "");
}

export function fmtNum(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  if (Math.abs(n) >= 1e9) return `${(n / 1e9).toFixed(2)}G`;
  if (Math.abs(n) >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (Math.abs(n) >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return Number.isInteger(n) ? String(n) : n.toFixed(2);
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

// Text with every occurrence of the query's words wrapped in <mark> (built as nodes, never as HTML).
export function highlight(text, query) {
  const words = (query || "").split(/\s+/).map((w) => w.replace(/[^\p{L}\p{N}_]/gu, "")).filter(Boolean);
  if (!words.length) return [text];
  const re = new RegExp(`(${words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|")})`, "giu");
  const out = [];
  let last = 0;
  for (const m of text.matchAll(re)) {
    if (m.index > last) out.push(text.slice(last, m.index));
    out.push(h("mark", {}, m[0]));
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

// A line diff (longest common subsequence): [{op: " "|"+"|"-", line}].
export function lineDiff(before, after) {
  const a = before.split("\n"), b = after.split("\n");
  const n = a.length, m = b.length;
  const dp = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i -= 1) {
    for (let j = m - 1; j >= 0; j -= 1) {
      dp[i][j] = a[i] === b[j] ? dp[i + 1][j + 1] + 1 : Math.max(dp[i + 1][j], dp[i][j + 1]);
    }
  }
  const out = [];
  let i = 0, j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) { out.push({ op: " ", line: a[i] }); i += 1; j += 1; }
    else if (dp[i + 1][j] >= dp[i][j + 1]) { out.push({ op: "-", line: a[i] }); i += 1; }
    else { out.push({ op: "+", line: b[j] }); j += 1; }
  }
  while (i < n) { out.push({ op: "-", line: a[i] }); i += 1; }
  while (j < m) { out.push({ op: "+", line: b[j] }); j += 1; }
  return out;
}

// Re-run `fn` every `ms` while the page is shown; returns a stop function.
export function every(ms, fn) {
  const id = setInterval(() => { if (!document.hidden) fn(); }, ms);
  return () => clearInterval(id);
}
