// Jobs: the history, newest first, a page at a time.
import { h, requestLine, when } from "./dom.js";
import { pagedTable } from "./pages.js";

const PAGE_SIZE = 25;
const COLUMNS = ["Job", "Created", "Target", "Command", "Hosts", "Key"];

function row(job) {
  return h("tr", {},
    h("td", {}, h("a", { href: `#/job/${encodeURIComponent(job.job_id)}`, class: "mono" }, job.job_id.slice(0, 8))),
    h("td", {}, when(job.created_at)),
    h("td", { class: "mono" }, job.target),
    h("td", { class: "mono" }, requestLine(job)),
    h("td", {}, job.expected_hosts ?? "any"),
    h("td", {}, job.caller));
}

export function render(context, root) {
  const table = pagedTable(context, { id: "jobs", columns: COLUMNS, path: "/job", pageSize: PAGE_SIZE, items: "jobs", row });
  root.append(h("h1", {}, "Jobs"), ...table);
  return null;
}
