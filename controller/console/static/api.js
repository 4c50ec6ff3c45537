// The HTTP API, with the key from this tab's sessionStorage, sent only as
// "Authorization: Bearer" (never in a URL, a cookie or the persistent storage).
const KEY_ITEM = "nexec.apiKey";

export const storedKey = () => sessionStorage.getItem(KEY_ITEM);
export const storeKey = (key) => sessionStorage.setItem(KEY_ITEM, key);
export const forgetKey = () => sessionStorage.removeItem(KEY_ITEM);

// An answer >= 400, with the API's message ({"error", "details", "code"}).
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
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
  return new ApiError(response.status, text);
}

async function send(path, init, key) {
  const headers = { Authorization: `Bearer ${key ?? storedKey() ?? ""}`, ...init.headers };
  try {
    return await fetch(path, { ...init, headers, credentials: "omit", cache: "no-store" });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, `the controller did not answer (${error.message})`);
  }
}

// JSON from the API. Throws ApiError (with the API's message) on any error answer.
export async function api(path, { method = "GET", body, key, signal } = {}) {
  const init = { method, signal, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await send(path, init, key);
  if (!response.ok) throw await apiError(response);
  return response.status === 204 ? null : response.json();
}

// Each NDJSON line of a streamed answer (GET /job/{id}/output), as it arrives.
export async function streamEvents(path, onEvent, signal) {
  const init = { signal, headers: { Accept: "application/x-ndjson" } };
  const response = await send(path, init);
  if (!response.ok) throw await apiError(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += value;
    const lines = buffered.split("\n");
    buffered = lines.pop();
    for (const line of lines) if (line.trim()) onEvent(JSON.parse(line));
  }
}
