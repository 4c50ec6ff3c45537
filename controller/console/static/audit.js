// Audit: who did what, newest first (keys with audit:read).
import { h, requestLine, when } from "./dom.js";
import { pagedTable } from "./pages.js";

const PAGE_SIZE = 50;
const COLUMNS = ["Time", "Key", "Request", "Status", "Outcome", "Target", "Command", "Job"];

function jobLink(jobId) {
  return jobId ? h("a", { href: `#/job/${encodeURIComponent(jobId)}` }, jobId.slice(0, 8)) : "";
}

function row(record) {
  const what = record.command ? requestLine(record) : "";
  return h("tr", {},
    h("td", {}, when(record.time)),
    h("td", {}, record.key_name || "—"),
    h("td", { class: "mono" }, `${record.method} ${record.path}`),
    h("td", {}, record.status),
    h("td", {}, record.outcome),
    h("td", { class: "mono" }, record.target),
    h("td", { class: "mono" }, what),
    h("td", {}, jobLink(record.job_id)));
}

export function render(context, root) {
  const table = pagedTable(context, { id: "audit", columns: COLUMNS, path: "/audit", pageSize: PAGE_SIZE, items: "records", row });
  root.append(h("h1", {}, "Audit"), ...table);
  return null;
}
