import { h } from "./dom.js";

// A list of fixed-height rows of which only the visible ones exist in the page:
// 10,000 items cost as much as the thirty on screen. Rows are made again at every
// render; `placed(row, item)` is called once each is in the page (to restore a scroll).
export class VirtualList {
  constructor(label, rowHeight, renderRow, placed = () => {}) {
    this.rowHeight = rowHeight;
    this.renderRow = renderRow;
    this.placed = placed;
    this.items = [];
    // The list has the name; its scrolling box is a named region the keyboard can focus.
    this.inner = h("div", { class: "vlist-inner", role: "list", "aria-label": label });
    this.element = h("div", { class: "vlist", role: "region", "aria-label": label, tabindex: 0 }, this.inner);
    this.element.addEventListener("scroll", () => this.schedule());
    this.pending = false;
  }

  setItems(items) {
    this.items = items;
    this.schedule();
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.render();
    });
  }

  render() {
    const total = this.items.length * this.rowHeight;
    this.element.style.height = `${Math.min(total + 2, Math.max(300, window.innerHeight * 0.6))}px`;
    const top = this.element.scrollTop;
    const height = this.element.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / this.rowHeight) - 4);
    const last = Math.min(this.items.length, Math.ceil((top + height) / this.rowHeight) + 4);
    this.inner.style.height = `${total}px`;
    const rows = [];
    const shown = this.items.slice(first, last);
    for (let index = first; index < last; index += 1) {
      const row = this.renderRow(this.items[index]);
      row.classList.add("vrow");
      row.setAttribute("role", "listitem");
      row.style.top = `${index * this.rowHeight}px`;
      row.style.height = `${this.rowHeight}px`;
      rows.push(row);
    }
    this.inner.replaceChildren(...rows);
    rows.forEach((row, index) => this.placed(row, shown[index]));
  }
}
