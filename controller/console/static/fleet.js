// Fleet: the live agents, filtered by name or label, refreshed by itself.
import { ago, field, h, printable } from "./dom.js";
import { VirtualList } from "./vlist.js";

const REFRESH_MS = 5000;

function matches(node, text) {
  if (!text) return true;
  const labels = Object.entries(node.labels).map(([key, value]) => `${key}:${value}`);
  return [node.hostname, ...labels].some((word) => word.includes(text));
}

// One column of a row: cut at its width (the style sheet), the whole text in its title.
function cell(text, attrs = {}) {
  return h("span", { ...attrs, title: printable(text) }, text);
}

function row(node) {
  const labels = Object.entries(node.labels).map(([key, value]) => `${key}:${value}`);
  return h("div", { class: "cols", "data-host": node.hostname },
    cell(node.hostname, { class: "mono" }),
    cell(labels.join(", ") || "—"),
    cell(node.version),
    cell(ago(node.last_seen)),
    cell(node.jobs_running),
    cell(node.load_avg.map((load) => load.toFixed(2)).join(" ")));
}

export function render(context, root) {
  const filter = h("input", { id: "fleet-filter", type: "search", placeholder: "web1, role:web" });
  const count = h("p", { class: "muted" });
  const list = new VirtualList("Live agents", 32, row);
  const head = h("div", { class: "cols head", "aria-hidden": "true" },
    ...["Hostname", "Labels", "Version", "Last seen", "Jobs", "Load"].map((t) => h("strong", {}, t)));
  let nodes = [];
  const show = () => {
    const shown = nodes.filter((node) => matches(node, filter.value.trim()));
    count.textContent = `${shown.length} of ${nodes.length} live agents`;
    list.setItems(shown);
  };
  const load = async () => {
    try {
      nodes = (await context.api("/node")).nodes;
      context.clearError();
      show();
    } catch (error) {
      context.showError(error);
    }
  };
  filter.addEventListener("input", show);
  const refresh = h("button", { type: "button", class: "secondary", onclick: load }, "Refresh");
  root.append(h("h1", {}, "Fleet"),
    h("div", { class: "row" }, h("div", { class: "grow" }, field("Filter by name or label", filter)), refresh),
    count, head, list.element);
  load();
  const timer = setInterval(load, context.refreshMs(REFRESH_MS));
  return () => clearInterval(timer);
}
