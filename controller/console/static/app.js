// The console's shell: sign in and out, the views, the error line.
import { api, ApiError, forgetKey, storedKey, storeKey } from "./api.js";
import * as audit from "./audit.js";
import * as fleet from "./fleet.js";
import * as job from "./job.js";
import * as jobs from "./jobs.js";
import * as run from "./run.js";

const VIEWS = { fleet, run, jobs, job, audit };
const $ = (id) => document.getElementById(id);
let whoami = null;
let cleanup = null;

function showError(error) {
  if (error && error.name === "AbortError") return;
  $("error").textContent = error instanceof ApiError ? error.message : String(error);
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

function route() {
  if (cleanup) cleanup();
  cleanup = null;
  if (whoami === null) return;
  const [name, ...params] = location.hash.replace(/^#\/?/, "").split("/");
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
  const context = { can, showError, clearError, refreshMs, whoami };
  cleanup = VIEWS[view].render(context, root, params.map(decodeURIComponent)) || null;
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

async function signIn(key) {
  clearError();
  try {
    whoami = await api("/whoami", { key });
  } catch (error) {
    showError(error);
    return false;
  }
  storeKey(key);
  showSignedIn();
  return true;
}

$("sign-in").addEventListener("submit", async (event) => {
  event.preventDefault();
  await signIn($("api-key").value.trim());
});
$("sign-out").addEventListener("click", () => signOut());
window.addEventListener("hashchange", () => {
  clearError();
  route();
});

const key = storedKey();
if (key) {
  signIn(key).then((ok) => ok || signOut(false));
} else {
  signOut();
}
