// Configs: list and filter, view as the API returns it (secrets masked), edit with a diff, save, delete.
import { agent, emptyBox, errorBox, h, lineDiff } from "../lib.js";

const TEMPLATE = `scrape_configs:
  - job_name: example
    static_configs:
      - targets: ['127.0.0.1:9100']
`;

export async function render(root, rest) {
  let names = [];
  let filter = "";
  let current = rest[0] || null;
  let stored = "";
  const list = h("ul", { class: "list", id: "config-list", "aria-label": "Stored configs" });
  const editorPane = h("div", { class: "panel", id: "config-editor" });
  const listStatus = h("p", { class: "muted" }, "Loading…");
  root.append(h("h1", {}, "Configs"), h("div", { class: "split" },
    h("div", { class: "panel" },
      h("div", { class: "toolbar" },
        h("label", {}, "Filter", h("input", { type: "search", id: "config-filter", "aria-label": "Filter configs",
          oninput: (e) => { filter = e.target.value.trim(); drawList(); } })),
        h("button", { type: "button", id: "new-config", onclick: () => openEditor(null) }, "New config")),
      listStatus, list),
    editorPane));

  function drawList() {
    const shown = names.filter((n) => n.includes(filter));
    listStatus.textContent = names.length ? `${shown.length} of ${names.length}` : "";
    list.replaceChildren(...(shown.length ? shown.map((n) => h("li", {}, h("button", {
      type: "button", "aria-current": n === current ? "true" : "false", onclick: () => openEditor(n) }, n)))
      : [h("li", {}, emptyBox(names.length ? "No config matches the filter." : "No configs stored yet."))]));
  }

  async function loadList() {
    try {
      names = (await agent("/agent/api/v1/configs")).configs;
      drawList();
    } catch (err) {
      list.replaceChildren(h("li", {}, errorBox(err, "Cannot list configs")));
    }
  }

  async function openEditor(name) {
    current = name;
    drawList();
    const nameInput = h("input", { id: "config-name", value: name || "", "aria-label": "Config name",
      readonly: name !== null, required: true });
    const text = h("textarea", { id: "config-yaml", spellcheck: "false", "aria-label": "Config YAML" });
    const message = h("div", { id: "config-message", "aria-live": "assertive" });
    const diffBox = h("div", { class: "diff", id: "config-diff" });
    stored = "";
    if (name !== null) {
      try {
        stored = (await agent(`/agent/api/v1/configs/${encodeURIComponent(name)}`)).value;
      } catch (err) {
        editorPane.replaceChildren(errorBox(err, `Cannot read ${name}`));
        return;
      }
    }
    text.value = name === null ? TEMPLATE : stored;
    const showDiff = () => {
      const d = lineDiff(stored, text.value);
      const changed = d.some((x) => x.op !== " ");
      diffBox.replaceChildren(changed
        ? h("pre", {}, d.map((x) => h("div", { class: x.op === "+" ? "add" : x.op === "-" ? "del" : "" },
          `${x.op} ${x.line}`)))
        : h("p", { class: "muted" }, "No change from the stored version."));
    };
    const save = async () => {
      const target = nameInput.value.trim();
      if (!target) { message.replaceChildren(h("div", { class: "alert error", role: "alert" }, "A config needs a name.")); return; }
      message.replaceChildren(h("p", { class: "muted" }, "Saving…"));
      try {
        await agent(`/agent/api/v1/config/${encodeURIComponent(target)}`, { method: "PUT", body: text.value,
          headers: { "Content-Type": "application/yaml" } });
        message.replaceChildren(h("div", { class: "alert ok", role: "status" }, `Saved ${target}.`));
        await loadList();
        if (name === null) { location.hash = `#/configs/${encodeURIComponent(target)}`; return; }
        stored = (await agent(`/agent/api/v1/configs/${encodeURIComponent(target)}`)).value;
        showDiff();
      } catch (err) {
        message.replaceChildren(h("div", { class: "alert error", role: "alert", id: "config-error" }, err.message));
      }
    };
    const dialog = h("dialog", { id: "delete-dialog", "aria-labelledby": "delete-title" },
      h("h2", { id: "delete-title" }, `Delete ${name}?`),
      h("p", {}, "The config stops on the node that runs it. This cannot be undone."),
      h("form", { method: "dialog", class: "toolbar" },
        h("button", { value: "cancel", class: "ghost", type: "submit" }, "Cancel"),
        h("button", { value: "delete", class: "danger", type: "submit", id: "confirm-delete" }, "Delete")));
    dialog.addEventListener("close", async () => {
      if (dialog.returnValue !== "delete") return;
      try {
        await agent(`/agent/api/v1/config/${encodeURIComponent(name)}`, { method: "DELETE" });
        history.replaceState(null, "", "#/configs");  // no re-render: the message stays
        current = null;
        editorPane.replaceChildren(h("div", { class: "alert ok", role: "status" }, `Deleted ${name}.`));
        await loadList();
      } catch (err) {
        message.replaceChildren(errorBox(err, "Delete failed"));
      }
    });
    editorPane.replaceChildren(
      h("h2", {}, name === null ? "New config" : name),
      h("div", { class: "toolbar" }, h("label", {}, "Name", nameInput)),
      h("label", {}, "YAML (secrets are shown as <secret>; put them back before saving)", text),
      h("div", { class: "toolbar" },
        h("button", { type: "button", id: "save-config", onclick: save }, "Save"),
        h("button", { type: "button", class: "ghost", id: "diff-config", onclick: showDiff }, "Diff with stored"),
        name !== null ? h("button", { type: "button", class: "danger", id: "delete-config",
          onclick: () => dialog.showModal() }, "Delete") : null),
      message, diffBox, dialog);
  }

  await loadList();
  if (current) await openEditor(current);
  else editorPane.replaceChildren(emptyBox("Choose a config to view or edit it, or add a new one."));
}
