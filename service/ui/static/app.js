// The UI shell: a hash router over the pages, the theme switch and this node's name in the header.
import { agent } from "./lib.js";
import * as cluster from "./pages/cluster.js";
import * as configs from "./pages/configs.js";
import * as targets from "./pages/targets.js";
import * as pipelines from "./pages/pipelines.js";
import * as logs from "./pages/logs.js";

const PAGES = { cluster, configs, targets, pipelines, logs };
const TITLES = { cluster: "Cluster", configs: "Configs", targets: "Targets", pipelines: "Pipelines", logs: "Logs" };
let stopCurrent = null;

function parseHash() {
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const [page, ...rest] = path.split("/");
  return { page: PAGES[page] ? page : "cluster", rest: rest.map(decodeURIComponent), params: new URLSearchParams(query) };
}

async function route() {
  const { page, rest, params } = parseHash();
  if (stopCurrent) { stopCurrent(); stopCurrent = null; }
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.page === page) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  document.title = `${TITLES[page]} · scraping-service`;
  const view = document.getElementById("view");
  view.replaceChildren();
  stopCurrent = (await PAGES[page].render(view, rest, params)) || null;
}

function setupTheme() {
  const button = document.getElementById("theme");
  const label = () => {
    const dark = document.documentElement.dataset.theme === "dark" ||
      (!document.documentElement.dataset.theme && matchMedia("(prefers-color-scheme: dark)").matches);
    button.textContent = dark ? "Light theme" : "Dark theme";
    return dark;
  };
  label();
  button.addEventListener("click", () => {
    const next = label() ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    localStorage.setItem("theme", next);
    label();
  });
}

async function showNode() {
  try {
    const ring = await agent("/agent/api/v1/cluster/ring");
    document.getElementById("node-id").textContent = `node ${ring.self}`;
  } catch {
    document.getElementById("node-id").textContent = "single node";
  }
}

setupTheme();
showNode();
window.addEventListener("hashchange", route);
route();
