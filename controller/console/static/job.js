// One job: every host's result and live output (one panel per host, virtualised), the
// grouped view (identical output and exit code shown once), search, cancel, rollout.
import { ApiError, streamEvents } from "./api.js";
import { field, h, requestLine, when } from "./dom.js";
import { VirtualList } from "./vlist.js";

const POLL_MS = 2000;
const KEPT_CHARS = 64 * 1024; // of each host's stream, in the page
const SHOWN_GROUPS = 100;
const NAMES_PER_GROUP = 30;

class Hosts {
  constructor() {
    this.byName = new Map();
    this.names = [];
    this.sorted = true;
    this.outcomes = 0; // changes of a host's outcome: the grouped view is made again then only
  }

  host(name) {
    let host = this.byName.get(name);
    if (!host) {
      host = { hostname: name, stdout: "", stderr: "", result: null };
      this.byName.set(name, host);
      this.names.push(name);
      this.sorted = false; // sorted once when drawn, not once per new host
    }
    return host;
  }

  expect(names) {
    for (const name of names || []) this.host(name);
  }

  // A chunk's stream name comes from the agent: only these two are drawn (any other
  // name would write another field of the host: its result, its name, its group).
  chunk(data) {
    if (data.stream !== "stdout" && data.stream !== "stderr") return;
    const host = this.host(data.hostname);
    if (host.result === null) host[data.stream] = (host[data.stream] + data.data).slice(-KEPT_CHARS);
  }

  result(result) {
    const host = this.host(result.hostname);
    host.result = result;
    host.stdout = result.stdout.slice(-KEPT_CHARS);
    host.stderr = result.stderr.slice(-KEPT_CHARS);
    // What the grouped view compares, made once per result, not once per frame.
    const outcome = JSON.stringify([result.status, result.exit_code, host.stdout, host.stderr]);
    if (outcome !== host.outcome) this.outcomes += 1;
    host.outcome = outcome;
  }

  all() {
    if (!this.sorted) this.names.sort();
    this.sorted = true;
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

// Where each host's output is scrolled. As a terminal: at the end it follows what
// arrives; scrolled up, it stays where the operator left it (every redraw makes the
// panel again) until they scroll back to the end.
class Scrolls {
  constructor() {
    this.kept = new Map(); // hostname -> scrollTop, for the outputs not at their end
  }

  watch(pre, name) {
    pre.addEventListener("scroll", () => {
      if (pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 2) this.kept.delete(name);
      else this.kept.set(name, pre.scrollTop);
    });
  }

  place(pre, name) {
    pre.scrollTop = this.kept.has(name) ? this.kept.get(name) : pre.scrollHeight;
  }
}

function outputOf(host, search) {
  const lines = (text) => (search ? text.split("\n").filter((line) => line.includes(search)).join("\n") : text);
  const tail = (text) => text.slice(-4000);
  const error = host.result && host.result.error ? `${host.result.error}\n` : "";
  return h("pre", {}, tail(lines(host.stdout)), h("span", { class: "stderr" }, tail(lines(host.stderr)), error));
}

function panel(host, search, scrolls) {
  const status = statusOf(host);
  const output = outputOf(host, search);
  scrolls.watch(output, host.hostname);
  return h("div", { class: "panel", "data-host": host.hostname },
    h("div", { class: "panel-head" },
      h("span", { class: "mono" }, host.hostname),
      h("span", { class: `status-${status}` }, status),
      h("span", {}, exitText(host))),
    output);
}

function groupsOf(hosts) {
  const groups = new Map();
  for (const host of hosts) {
    if (!host.result) continue;
    if (!groups.has(host.outcome)) groups.set(host.outcome, { sample: host, names: [] });
    groups.get(host.outcome).names.push(host.hostname);
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
  const command = requestLine(job);
  return [
    h("p", {}, "State: ", h("strong", { id: "job-state", class: `status-${job.state}` }, job.state)),
    h("p", { class: "mono" }, `${job.target} $ ${command}`),
    h("p", { class: "muted" }, `by ${job.caller}, ${when(job.created_at)}; timeout ${job.timeout}s`),
    job.rollout ? h("p", { id: "job-rollout" }, rolloutText(job.rollout)) : "",
  ];
}

function matching(hosts, text) {
  if (!text) return hosts;
  return hosts.filter((host) => host.stdout.includes(text) || host.stderr.includes(text));
}

// A stream that broke or was refused for a while (no answer, 429, 5xx) is read again;
// a 4xx (the job is gone, the key may no longer see it) or a garbled line is final.
function worthRetrying(error) {
  return error instanceof ApiError && (error.status === 0 || error.status === 429 || error.status >= 500);
}

// The view of one job: its parts, what it has read so far, and how it reads more.
class JobPage {
  constructor(context, jobId) {
    this.context = context;
    this.path = `/job/${encodeURIComponent(jobId)}`;
    this.hosts = new Hosts();
    this.state = null;
    this.lastEventId = null; // of the output stream: where to resume it
    this.ended = false; // the stream said "end"
    this.readFailed = false; // the error line shows a failed read of this job
    this.timer = null;
    this.frame = false;
    this.searchText = "";
    this.groupsDrawnFor = null; // the count of outcome changes the grouped view was made for
    this.head = h("div", { id: "job-summary" });
    this.search = h("input", { id: "job-search", type: "search", oninput: () => this.searched() });
    this.counts = h("p", { class: "muted", id: "job-counts" });
    this.groups = h("div", { id: "job-groups" });
    this.scrolls = new Scrolls();
    this.list = new VirtualList("Hosts", 150, (host) => panel(host, this.searchText, this.scrolls),
      (row, host) => this.scrolls.place(row.querySelector("pre"), host.hostname));
    this.cancel = h("button", { type: "button", id: "job-cancel", hidden: true, onclick: () => this.cancelJob() }, "Cancel job");
  }

  elements(jobId) {
    return [h("h1", {}, "Job ", h("span", { class: "mono" }, jobId)), this.head, this.cancel, this.counts,
      field("Search the output", this.search), h("h2", {}, "Hosts"), this.list.element, this.groups];
  }

  draw() {
    this.frame = false;
    const all = this.hosts.all();
    const shown = matching(all, this.searchText);
    const done = all.filter((host) => host.result).length;
    const matched = this.searchText ? `; ${shown.length} match` : "";
    this.counts.textContent = `${done} of ${all.length} hosts answered${matched}`;
    this.list.setItems(shown);
    if (this.groupsDrawnFor === this.hosts.outcomes) return; // unchanged (and scrolled as left)
    this.groupsDrawnFor = this.hosts.outcomes;
    const found = groupsOf(all);
    const title = `Grouped: ${found.length} distinct outcome${found.length === 1 ? "" : "s"}`;
    this.groups.replaceChildren(h("h2", {}, title), ...found.slice(0, SHOWN_GROUPS).map(groupView));
  }

  redraw() {
    if (this.frame) return;
    this.frame = true;
    requestAnimationFrame(() => this.draw());
  }

  searched() {
    this.searchText = this.search.value;
    this.redraw();
  }

  failed(error) {
    this.readFailed = true;
    this.context.showError(error);
  }

  async refresh() {
    try {
      const job = await this.context.api(this.path);
      if (this.readFailed) this.context.clearError();
      this.readFailed = false;
      this.state = job.state;
      this.head.replaceChildren(...summary(job));
      this.hosts.expect(job.expected_hosts);
      for (const result of job.results) this.hosts.result(result);
      this.cancel.hidden = !(job.state === "running" && this.context.can("job:cancel"));
      if (job.state !== "running") this.stopPolling();
      this.redraw();
    } catch (error) {
      this.failed(error);
    }
  }

  onEvent(event) {
    if (event.id !== null && event.id !== undefined) this.lastEventId = event.id;
    if (event.event === "output") this.hosts.chunk(event.data);
    else if (event.event === "result") this.hosts.result(event.data);
    else if (event.event === "end") this.ended = true;
    this.redraw();
  }

  // The live output, read again after Last-Event-ID when it breaks (the controller
  // restarted, the network failed) for as long as the job runs: nothing lost or doubled.
  async follow() {
    const options = { signal: this.context.signal };
    while (!this.ended && this.state === "running" && !options.signal.aborted) {
      let waitS = null;
      try {
        options.lastEventId = this.lastEventId;
        await streamEvents(`${this.path}/output`, (event) => this.onEvent(event), options);
      } catch (error) {
        if (error.name === "AbortError") return;
        this.failed(error);
        if (!worthRetrying(error)) return;
        waitS = error.retryAfterS;
      }
      if (this.ended) this.refresh();
      else await this.pause(waitS);
    }
  }

  // One poll interval (or Retry-After), ended early when the view is.
  pause(retryAfterS) {
    const signal = this.context.signal;
    const waitMs = Math.max(this.context.refreshMs(POLL_MS), (retryAfterS ?? 0) * 1000);
    return new Promise((resolve) => {
      const aborted = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        signal.removeEventListener("abort", aborted);
        resolve();
      }, waitMs);
      signal.addEventListener("abort", aborted, { once: true });
    });
  }

  async cancelJob() {
    this.cancel.disabled = true;
    try {
      await this.context.api(`${this.path}/cancel`, { method: "POST" });
    } catch (error) {
      this.context.showError(error);
    }
    this.cancel.disabled = false;
    this.refresh();
  }

  async start() {
    await this.refresh();
    if (this.state !== "running") return;
    this.follow();
    this.timer = setInterval(() => this.refresh(), this.context.refreshMs(POLL_MS));
  }

  stopPolling() {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  stop() {
    this.stopPolling();
  }
}

export function render(context, root, [jobId]) {
  const page = new JobPage(context, jobId);
  root.append(...page.elements(jobId));
  page.start();
  return () => page.stop();
}
