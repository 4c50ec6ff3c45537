// The HTTP API, with the key from this tab's sessionStorage, sent only as
// "Authorization: Bearer" (never in a URL, a cookie or the persistent storage).
const KEY_ITEM = "nexec.apiKey";

// A read (GET) answered 429 or 503 with Retry-After: until then every read with the
// same key gets that answer again without being sent (the polls and Refresh wait).
let refusal = null;

export const storedKey = () => sessionStorage.getItem(KEY_ITEM);
export const storeKey = (key) => sessionStorage.setItem(KEY_ITEM, key);
export function forgetKey() {
  sessionStorage.removeItem(KEY_ITEM);
  refusal = null;
}

// An answer >= 400, with the API's message ({"error", "details", "code"}); status 0
// when the controller did not answer. retryAfterS: the Retry-After header, if any.
export class ApiError extends Error {
  constructor(status, message, retryAfterS = null) {
    super(message);
    this.status = status;
    this.retryAfterS = retryAfterS;
  }
}

async function apiError(response) {
  let text = `HTTP ${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && typeof body.error === "string") {
      text = `${response.status} ${body.error}: ${body.details}`;
    }
  } catch {
    // not the API's JSON: keep the status line
  }
  const retryAfter = Number.parseInt(response.headers.get("Retry-After") ?? "", 10);
  return new ApiError(response.status, text, Number.isFinite(retryAfter) ? retryAfter : null);
}

const unanswered = (error) => new ApiError(0, `the controller did not answer (${error.message})`);

// The answer to one request. Throws ApiError for an error answer or none at all.
async function send(path, init, key = storedKey() ?? "") {
  const reading = (init.method ?? "GET") === "GET";
  if (reading && refusal && refusal.key === key && Date.now() < refusal.until) throw refusal.error;
  let response;
  try {
    const headers = { Authorization: `Bearer ${key}`, ...init.headers };
    response = await fetch(path, { ...init, headers, credentials: "omit", cache: "no-store" });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw unanswered(error);
  }
  if (response.ok) return response;
  const error = await apiError(response);
  if (reading && error.retryAfterS !== null && [429, 503].includes(error.status)) {
    refusal = { key, until: Date.now() + error.retryAfterS * 1000, error };
  }
  throw error;
}

// JSON from the API. Throws ApiError (with the API's message) on any error answer.
export async function api(path, { method = "GET", body, key, signal } = {}) {
  const init = { method, signal, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await send(path, init, key);
  return response.status === 204 ? null : response.json();
}

// Each NDJSON line of a streamed answer (GET /job/{id}/output), as it arrives, from
// the event after lastEventId (null: from the start). Returns when the answer ends;
// throws ApiError when it cannot start or breaks.
export async function streamEvents(path, onEvent, { signal, lastEventId = null }) {
  const headers = { Accept: "application/x-ndjson" };
  if (lastEventId !== null) headers["Last-Event-ID"] = String(lastEventId);
  const response = await send(path, { signal, headers });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw unanswered(error);
    }
    if (chunk.done) return;
    buffered += chunk.value;
    const lines = buffered.split("\n");
    buffered = lines.pop();
    for (const line of lines) if (line.trim()) onEvent(JSON.parse(line));
  }
}
