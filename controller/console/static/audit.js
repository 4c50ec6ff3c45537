// Audit: who did what, newest first (keys with audit:read).
import { commandLine, h, when } from "./dom.js";

export const PAGE_SIZE = 50;

function row(record) {
  const what = record.command ? commandLine(record.command, record.args) : "";
  return h("tr", {},
    h("td", {}, when(record.time)),
    h("td", {}, record.key_name || "—"),
    h("td", { class: "mono" }, `${record.method} ${record.path}`),
    h("td", {}, record.status),
    h("td", {}, record.outcome),
    h("td", { class: "mono" }, record.target),
    h("td", { class: "mono" }, what),
    h("td", {}, record.job_id ? h("a", { href: `#/job/${record.job_id}` }, record.job_id.slice(0, 8)) : ""));
}

export function render(context, root) {
  const body = h("tbody");
  const cursors = [null];
  const newer = h("button", { type: "button", class: "secondary" }, "Newer");
  const older = h("button", { type: "button", class: "secondary" }, "Older");
  const load = async () => {
    const cursor = cursors[cursors.length - 1];
    const query = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
    try {
      const page = await context.api(`/audit?limit=${PAGE_SIZE}${query}`);
      body.replaceChildren(...page.records.map(row));
      older.disabled = page.next_cursor === null;
      older.onclick = () => { cursors.push(page.next_cursor); load(); };
      newer.disabled = cursors.length === 1;
    } catch (error) {
      context.showError(error);
    }
  };
  newer.onclick = () => { cursors.pop(); load(); };
  const columns = ["Time", "Key", "Request", "Status", "Outcome", "Target", "Command", "Job"];
  const head = h("tr", {}, ...columns.map((t) => h("th", { scope: "col" }, t)));
  root.append(h("h1", {}, "Audit"), h("table", { id: "audit" }, h("thead", {}, head), body),
    h("div", { class: "row" }, newer, older));
  load();
  return null;
}
