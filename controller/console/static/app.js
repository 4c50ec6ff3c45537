// The console's shell: sign in and out, the views, the error line.
import { api, ApiError, forgetKey, storedKey, storeKey } from "./api.js";
import * as audit from "./audit.js";
import { printable } from "./dom.js";
import * as fleet from "./fleet.js";
import * as job from "./job.js";
import * as jobs from "./jobs.js";
import * as run from "./run.js";

const VIEWS = { fleet, run, jobs, job, audit };
const SIGN_IN_RETRY_MS = 5000;
const $ = (id) => document.getElementById(id);
let whoami = null;
let cleanup = null;
let retry = null; // the timer of a sign-in with the kept key, tried again

function showError(error) {
  if (error && error.name === "AbortError") return;
  $("error").textContent = printable(error instanceof ApiError ? error.message : String(error));
  $("error").hidden = false;
  if (error instanceof ApiError && error.status === 401 && whoami !== null) signOut(false);
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

const can = (permission) => whoami !== null && whoami.permissions.includes(permission);

// How often the fleet and a running job are read again: the view's default, or
// ?refresh_s=N in the page's address (0.1 to 3600 seconds).
function refreshMs(defaultMs) {
  const seconds = Number(new URLSearchParams(location.search).get("refresh_s"));
  return seconds >= 0.1 && seconds <= 3600 ? seconds * 1000 : defaultMs;
}

function allowedViews() {
  return [...document.querySelectorAll("#nav a")]
    .filter((link) => link.dataset.needs.split(" ").some(can))
    .map((link) => link.dataset.view);
}

// A part of the page's address as it was meant ("%" alone is no encoding: kept as it is).
function decoded(part) {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

function route() {
  if (cleanup) cleanup();
  cleanup = null;
  if (whoami === null) return;
  const [name, ...params] = location.hash.replace(/^#\/?/, "").split("/").map(decoded);
  const allowed = allowedViews();
  const view = name === "job" && can("job:read") ? "job" : allowed.includes(name) ? name : null;
  if (view === null) {
    if (allowed.length) location.hash = `#/${allowed[0]}`;
    else $("view").replaceChildren("This key may not use any view of the console.");
    return;
  }
  for (const link of document.querySelectorAll("#nav a")) {
    link.hidden = !allowed.includes(link.dataset.view);
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const root = $("view");
  root.replaceChildren();
  // Every request of the view ends with it (another view, sign out): nothing read with
  // the key is drawn once the view is gone.
  const reads = new AbortController();
  const signal = reads.signal;
  const viewApi = (path, options = {}) => api(path, { ...options, signal });
  const context = { api: viewApi, signal, can, showError, clearError, refreshMs, whoami };
  const stop = VIEWS[view].render(context, root, params);
  cleanup = () => {
    reads.abort();
    if (stop) stop();
  };
  focusView(root);
}

// A new view takes the focus (its first field, or else its heading), so the keyboard
// and a screen reader go on from there, not from a form or view now gone.
function focusView(root) {
  if (root.contains(document.activeElement)) return;
  const heading = root.querySelector("h1");
  if (heading === null) return;
  heading.tabIndex = -1;
  heading.focus();
}

function showSignedIn() {
  $("sign-in").hidden = true;
  $("nav").hidden = false;
  $("sign-out").hidden = false;
  $("who").textContent = `key: ${whoami.name}`;
  route();
}

function signOut(clearMessage = true) {
  forgetKey();
  clearTimeout(retry);
  whoami = null;
  if (cleanup) cleanup();
  cleanup = null;
  if (clearMessage) clearError();
  $("view").replaceChildren();
  $("nav").hidden = true;
  $("sign-out").hidden = true;
  $("who").textContent = "";
  $("sign-in").hidden = false;
  $("api-key").value = "";
  $("api-key").focus();
}

// Returns the refusal (an ApiError), or null once signed in.
async function signIn(key) {
  clearError();
  clearTimeout(retry);
  try {
    whoami = await api("/whoami", { key });
  } catch (error) {
    showError(error);
    return error;
  }
  storeKey(key);
  $("api-key").value = "";
  showSignedIn();
  return null;
}

// The key kept in this tab (a reload): only a 401 forgets it; any other refusal (429,
// 503, no answer) is shown and the sign-in tried again, after Retry-After if given.
async function resume(key) {
  const refused = await signIn(key);
  if (refused === null) return;
  if (refused.status === 401) {
    signOut(false);
    return;
  }
  $("sign-in").hidden = false;
  const waitMs = refused.retryAfterS > 0 ? refused.retryAfterS * 1000 : SIGN_IN_RETRY_MS;
  retry = setTimeout(() => resume(key), waitMs);
}

$("sign-in").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if ((await signIn(key)) !== null) forgetKey();
});
$("sign-out").addEventListener("click", () => signOut());
window.addEventListener("hashchange", () => {
  clearError();
  route();
});

const key = storedKey();
if (key) {
  resume(key);
} else {
  signOut();
}
