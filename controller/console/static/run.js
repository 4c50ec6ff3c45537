// Run: a command on a target, after a dry run has shown the hosts it resolves to.
import { field, h } from "./dom.js";

const SHOWN_HOSTS = 50;

function input(id, attrs = {}) {
  return h("input", { id, name: id, type: "text", ...attrs });
}

function rolloutOf(form) {
  const batch = form.elements["run-batch"].value.trim();
  if (!batch) return undefined;
  const number = (text) => (/^\d+$/.test(text) ? Number(text) : text);
  const rollout = { batch_size: number(batch) };
  const failures = form.elements["run-failures"].value.trim();
  if (failures) rollout.max_failures = number(failures);
  const pause = form.elements["run-pause"].value.trim();
  if (pause) rollout.pause_s = Number(pause);
  return rollout;
}

function requestOf(form) {
  const mode = form.elements["run-mode"].value;
  const body = { command: form.elements["run-command"].value, timeout: Number(form.elements["run-timeout"].value) };
  if (mode === "exec") {
    body.args = form.elements["run-args"].value.split("\n").filter((line) => line !== "");
  }
  const rollout = rolloutOf(form);
  if (rollout) body.rollout = rollout;
  const target = encodeURIComponent(form.elements["run-target"].value.trim());
  return { path: `/node/${target}/command/${mode}`, body };
}

function preview(answer, onRun) {
  const names = answer.hosts.slice(0, SHOWN_HOSTS).join(", ");
  const more = answer.count > SHOWN_HOSTS ? ` and ${answer.count - SHOWN_HOSTS} more` : "";
  const once = async (event) => {
    const button = event.target;
    button.disabled = true; // one click, one job
    if (!(await onRun())) button.disabled = false; // refused: its message shown, try again
  };
  const button = h("button", { type: "button", id: "run-confirm", onclick: once },
    `Run on ${answer.count} host${answer.count === 1 ? "" : "s"}`);
  const batch = answer.batch_size < answer.count ? ` (${answer.batch_size} at a time)` : "";
  const hosts = `${answer.count} host${answer.count === 1 ? "" : "s"}`;
  return [h("p", { id: "run-hosts" }, `Resolves to ${hosts}${batch}: ${names}${more}`), button];
}

function modes(context) {
  const allowed = ["exec", "shell"].filter((mode) => context.can(`command:${mode}`));
  return h("select", { id: "run-mode", name: "run-mode" },
    ...allowed.map((mode) => h("option", { value: mode }, mode === "exec" ? "exec (no shell)" : "shell (/bin/sh -c)")));
}

function formOf(context) {
  const form = h("form", { id: "run-form", class: "card" },
    h("div", { class: "row" },
      h("div", { class: "grow" }, field("Target", input("run-target", { required: true, placeholder: "_all, web1, role:web" }))),
      h("div", {}, field("Mode", modes(context)))),
    field("Command", input("run-command", { required: true, placeholder: "uptime" })),
    field("Arguments (one per line; exec only)", h("textarea", { id: "run-args", name: "run-args", rows: 2 })),
    h("div", { class: "row" },
      h("div", {}, field("Timeout (s)", input("run-timeout", { type: "number", min: 1, max: 300, value: 30 }))),
      h("div", {}, field("Rollout batch size", input("run-batch", { placeholder: "all at once; 2 or 10%" }))),
      h("div", {}, field("Max failures", input("run-failures", { placeholder: "0 or 5%" }))),
      h("div", {}, field("Pause between hosts (s)", input("run-pause", { type: "number", min: 0, step: "any" })))),
    h("button", { type: "submit" }, "Show hosts"));
  const mode = form.elements["run-mode"];
  const args = form.elements["run-args"];
  const syncMode = () => { args.disabled = mode.value !== "exec"; };
  mode.addEventListener("change", syncMode);
  syncMode();
  return form;
}

// Send the request for real, then open the job's view; false when it was refused (the
// API's message is shown).
async function start(context, path, body) {
  context.clearError();
  try {
    const started = await context.api(`${path}?wait=false`, { method: "POST", body });
    location.hash = `#/job/${started.job_id}`;
    return true;
  } catch (error) {
    context.showError(error);
    return false;
  }
}

export function render(context, root) {
  const form = formOf(context);
  const result = h("div", { id: "run-preview" });
  form.addEventListener("input", () => result.replaceChildren());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    context.clearError();
    const { path, body } = requestOf(form);
    try {
      const answer = await context.api(`${path}?dry_run=true`, { method: "POST", body });
      result.replaceChildren(...preview(answer, () => start(context, path, body)));
      result.querySelector("button").focus();
    } catch (error) {
      context.showError(error);
    }
  });
  root.append(h("h1", {}, "Run"), form, result);
  form.elements["run-target"].focus();
  return null;
}
