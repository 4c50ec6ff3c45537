// One job: every host's result and live output (one panel per host, virtualised), the
// grouped view (identical output and exit code shown once), search, cancel, rollout.
import { api, streamEvents } from "./api.js";
import { commandLine, field, h, when } from "./dom.js";
import { VirtualList } from "./vlist.js";

export const POLL_MS = 2000;
const KEPT_CHARS = 64 * 1024; // of each host's stream, in the page
const SHOWN_GROUPS = 100;
const NAMES_PER_GROUP = 30;

class Hosts {
  constructor() {
    this.byName = new Map();
    this.names = [];
  }

  host(name) {
    let host = this.byName.get(name);
    if (!host) {
      host = { hostname: name, stdout: "", stderr: "", result: null };
      this.byName.set(name, host);
      this.names.push(name);
      this.names.sort();
    }
    return host;
  }

  expect(names) {
    for (const name of names || []) this.host(name);
  }

  chunk(data) {
    const host = this.host(data.hostname);
    if (host.result === null) host[data.stream] = (host[data.stream] + data.data).slice(-KEPT_CHARS);
  }

  result(result) {
    const host = this.host(result.hostname);
    host.result = result;
    host.stdout = result.stdout;
    host.stderr = result.stderr;
  }

  all() {
    return this.names.map((name) => this.byName.get(name));
  }
}

function statusOf(host) {
  return host.result ? host.result.status : "running";
}

function exitText(host) {
  if (!host.result) return "";
  return host.result.exit_code === null ? "no exit code" : `exit ${host.result.exit_code}`;
}

function outputOf(host, search) {
  const lines = (text) => (search ? text.split("\n").filter((line) => line.includes(search)).join("\n") : text);
  const tail = (text) => text.slice(-4000);
  const error = host.result && host.result.error ? `${host.result.error}\n` : "";
  return h("pre", {}, tail(lines(host.stdout)), h("span", { class: "stderr" }, tail(lines(host.stderr)), error));
}

function panel(host, search) {
  const status = statusOf(host);
  return h("div", { class: "panel", "data-host": host.hostname },
    h("div", { class: "panel-head" },
      h("span", { class: "mono" }, host.hostname),
      h("span", { class: `status-${status}` }, status),
      h("span", {}, exitText(host))),
    outputOf(host, search));
}

function groupsOf(hosts) {
  const groups = new Map();
  for (const host of hosts) {
    if (!host.result) continue;
    const key = JSON.stringify([host.result.status, host.result.exit_code, host.stdout, host.stderr]);
    if (!groups.has(key)) groups.set(key, { sample: host, names: [] });
    groups.get(key).names.push(host.hostname);
  }
  return [...groups.values()].sort((a, b) => b.names.length - a.names.length);
}

function groupView(group) {
  const { names, sample } = group;
  const more = names.length > NAMES_PER_GROUP ? ` and ${names.length - NAMES_PER_GROUP} more` : "";
  return h("div", { class: "group card" },
    h("div", { class: "panel-head" },
      h("span", {}, `${names.length} host${names.length === 1 ? "" : "s"}`),
      h("span", { class: `status-${statusOf(sample)}` }, statusOf(sample)),
      h("span", {}, exitText(sample))),
    h("p", { class: "hosts mono" }, names.slice(0, NAMES_PER_GROUP).join(", ") + more),
    h("pre", {}, sample.stdout, h("span", { class: "stderr" }, sample.stderr)));
}

function rolloutText(rollout) {
  const stopped = rollout.stopped ? `; stopped: ${rollout.stopped}` : "";
  return `Rollout (${rollout.batch_size} at a time, at most ${rollout.max_failures} failures): `
    + `${rollout.finished} finished, ${rollout.running} running, ${rollout.pending} pending, `
    + `${rollout.failed} failed, ${rollout.skipped} skipped${stopped}`;
}

function summary(job) {
  const command = commandLine(job.command, job.args);
  return [
    h("p", {}, "State: ", h("strong", { id: "job-state", class: `status-${job.state}` }, job.state)),
    h("p", { class: "mono" }, `${job.target} $ ${command}`),
    h("p", { class: "muted" }, `by ${job.caller}, ${when(job.created_at)}; timeout ${job.timeout}s`),
    job.rollout ? h("p", { id: "job-rollout" }, rolloutText(job.rollout)) : "",
  ];
}

export function render(context, root, [jobId]) {
  const hosts = new Hosts();
  const abort = new AbortController();
  const path = `/job/${encodeURIComponent(jobId)}`;
  const head = h("div", { id: "job-summary" });
  const search = h("input", { id: "job-search", type: "search" });
  const counts = h("p", { class: "muted", id: "job-counts" });
  const groups = h("div", { id: "job-groups" });
  let searchText = "";
  const list = new VirtualList("Hosts", 150, (host) => panel(host, searchText));
  const cancel = h("button", { type: "button", id: "job-cancel", hidden: true }, "Cancel job");
  let state = null;
  let timer = null;
  let frame = false;

  const draw = () => {
    frame = false;
    const all = hosts.all();
    const shown = searchText ? all.filter((host) => host.stdout.includes(searchText) || host.stderr.includes(searchText)) : all;
    const done = all.filter((host) => host.result).length;
    counts.textContent = `${done} of ${all.length} hosts answered` + (searchText ? `; ${shown.length} match` : "");
    list.setItems(shown);
    const found = groupsOf(all);
    groups.replaceChildren(h("h2", {}, `Grouped: ${found.length} distinct outcome${found.length === 1 ? "" : "s"}`),
      ...found.slice(0, SHOWN_GROUPS).map(groupView));
  };
  const redraw = () => {
    if (!frame) {
      frame = true;
      requestAnimationFrame(draw);
    }
  };
  const refresh = async () => {
    try {
      const job = await api(path, { signal: abort.signal });
      state = job.state;
      head.replaceChildren(...summary(job));
      hosts.expect(job.expected_hosts);
      for (const result of job.results) hosts.result(result);
      cancel.hidden = !(state === "running" && context.can("job:cancel"));
      if (state !== "running" && timer !== null) {
        clearInterval(timer);
        timer = null;
      }
      redraw();
    } catch (error) {
      context.showError(error);
    }
  };
  const follow = async () => {
    const onEvent = (event) => {
      if (event.event === "output") hosts.chunk(event.data);
      else if (event.event === "result") hosts.result(event.data);
      else if (event.event === "end") refresh();
      redraw();
    };
    try {
      await streamEvents(`${path}/output`, onEvent, abort.signal);
    } catch (error) {
      context.showError(error);
    }
  };
  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      await api(`${path}/cancel`, { method: "POST" });
    } catch (error) {
      context.showError(error);
    }
    cancel.disabled = false;
    refresh();
  });
  search.addEventListener("input", () => {
    searchText = search.value;
    redraw();
  });
  root.append(h("h1", {}, "Job ", h("span", { class: "mono" }, jobId)), head, cancel, counts,
    field("Search the output", search), h("h2", {}, "Hosts"), list.element, groups);
  refresh().then(() => {
    if (state === "running") {
      follow();
      timer = setInterval(refresh, context.refreshMs(POLL_MS));
    }
  });
  return () => {
    abort.abort();
    if (timer !== null) clearInterval(timer);
  };
}
