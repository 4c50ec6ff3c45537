// Jobs: the history, newest first, a page at a time.
import { commandLine, h, when } from "./dom.js";

export const PAGE_SIZE = 25;

function row(job) {
  const command = commandLine(job.command, job.args);
  return h("tr", {},
    h("td", {}, h("a", { href: `#/job/${job.job_id}`, class: "mono" }, job.job_id.slice(0, 8))),
    h("td", {}, when(job.created_at)),
    h("td", { class: "mono" }, job.target),
    h("td", { class: "mono" }, command),
    h("td", {}, job.expected_hosts ?? "any"),
    h("td", {}, job.caller));
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
      const page = await context.api(`/job?limit=${PAGE_SIZE}${query}`);
      body.replaceChildren(...page.jobs.map(row));
      older.disabled = page.next_cursor === null;
      older.onclick = () => { cursors.push(page.next_cursor); load(); };
      newer.disabled = cursors.length === 1;
    } catch (error) {
      context.showError(error);
    }
  };
  newer.onclick = () => { cursors.pop(); load(); };
  const head = h("tr", {}, ...["Job", "Created", "Target", "Command", "Hosts", "Key"].map((t) => h("th", { scope: "col" }, t)));
  const refresh = h("button", { type: "button", class: "secondary", onclick: load }, "Refresh");
  root.append(h("h1", {}, "Jobs"), h("table", { id: "jobs" }, h("thead", {}, head), body),
    h("div", { class: "row" }, newer, older, refresh));
  load();
  return null;
}
