// Terminal escapes (colours, cursor moves, titles): dropped, the page is no terminal.
const ANSI = /\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])/g;
// Other C0 controls but tab and newline, and DEL: shown as their Unicode pictures (␇).
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f]/g;
// C1 controls and the bidirectional overrides that could reorder what is shown
// ("Trojan Source"): shown as [U+202E].
const INVISIBLE = /[\x80-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

const picture = (c) => String.fromCharCode(c === "\x7f" ? 0x2421 : 0x2400 + c.charCodeAt(0));
const codePoint = (c) => `[U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")}]`;

// Text from the API (hosts' output, names, errors) as the page shows it: never acted on.
export function printable(text) {
  return String(text).replace(ANSI, "").replace(/\r\n?/g, "\n")
    .replace(CONTROL, picture).replace(INVISIBLE, codePoint);
}

// Elements made from text only (never parsed as markup), every text through printable.
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : printable(child));
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
  return [command, ...args].map(quote).join(" ");
}

// What a job or an audit record ran: a shell job's one line as `sh -c '...'`.
export function requestLine(request) {
  return request.shell ? commandLine("sh", ["-c", request.command]) : commandLine(request.command, request.args);
}
