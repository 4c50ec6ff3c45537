// A table read a page at a time, newest first (GET /job, GET /audit): Newer and Older
// follow the API's next_cursor.
import { h } from "./dom.js";

// columns: the header cells; path: the list's URL; items: the answer's list field;
// row: one item as a <tr>. Returns the table and its buttons, first page requested.
export function pagedTable(context, { id, columns, path, pageSize, items, row }) {
  const body = h("tbody");
  const cursors = [null];
  const newer = h("button", { type: "button", class: "secondary", disabled: true }, "Newer");
  const older = h("button", { type: "button", class: "secondary", disabled: true }, "Older");
  let next = null;
  const load = async () => {
    const cursor = cursors[cursors.length - 1];
    const query = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
    try {
      const page = await context.api(`${path}?limit=${pageSize}${query}`);
      body.replaceChildren(...page[items].map(row));
      next = page.next_cursor;
      older.disabled = next === null;
      newer.disabled = cursors.length === 1;
    } catch (error) {
      context.showError(error);
    }
  };
  newer.addEventListener("click", () => { cursors.pop(); load(); });
  older.addEventListener("click", () => { cursors.push(next); load(); });
  const refresh = h("button", { type: "button", class: "secondary", onclick: load }, "Refresh");
  const head = h("tr", {}, ...columns.map((text) => h("th", { scope: "col" }, text)));
  load();
  return [h("table", { id }, h("thead", {}, head), body), h("div", { class: "row" }, newer, older, refresh)];
}
