// Elements made from text only (never parsed as markup): output from hosts stays text.
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

// A labelled field: <div><label for=id>text</label><input id=id ...></div>.
export function field(text, control) {
  return h("div", {}, h("label", { for: control.id }, text), control);
}

export function ago(unixSeconds) {
  const seconds = Math.max(0, Math.round(Date.now() / 1000 - unixSeconds));
  return seconds < 120 ? `${seconds}s ago` : `${Math.round(seconds / 60)}m ago`;
}

export function when(unixSeconds) {
  return new Date(unixSeconds * 1000).toLocaleString();
}

// A command and its arguments as one line a shell would read the same way.
export function commandLine(command, args = []) {
  const quote = (word) => (/^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, "'\\''")}'`);
  return [command, ...args.map(quote)].join(" ");
}
