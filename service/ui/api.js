// The gateway's HTTP API as the page uses it: the API key (kept in this tab's sessionStorage and sent as
// X-API-Key), JSON requests, and errors turned into words (the problem+json `detail`), never swallowed.

const KEY_STORAGE = "ufo.apiKey";

/** An error the API answered with: `message` is what to show the person. */
export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

/** The API key for this tab, or "". */
export function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

/** Keep `key` for this tab (an empty key forgets it). */
export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

function headers(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, "X-API-Key": key } : extra;
}

/** The words for a failed response: the problem's title, status and detail. */
async function describeFailure(response) {
  const text = await response.text();
  try {
    const problem = JSON.parse(text);
    if (problem && problem.detail) {
      return `${problem.title || "Error"} (${response.status}): ${problem.detail}`;
    }
  } catch (_) { /* not JSON: show the text itself */ }
  const body = text.trim().slice(0, 300);
  return `The gateway answered ${response.status} ${response.statusText}${body ? `: ${body}` : ""}`;
}

/** fetch, with the key and an error in words for a network failure or a non-2xx answer. */
export async function send(method, path, { json, accept } = {}) {
  const init = { method, headers: headers(accept ? { Accept: accept } : {}) };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(`Could not reach the gateway (${error.message}). Is the server running?`, 0);
  }
  if (!response.ok) throw new ApiError(await describeFailure(response), response.status);
  return response;
}

/** A JSON request answered with JSON (or null for 204). */
export async function call(method, path, json) {
  const response = await send(method, path, { json });
  return response.status === 204 ? null : response.json();
}

/** The path of a task's resource, with every part escaped. */
export function taskPath(task, ...parts) {
  return ["/v1/tasks", task, ...parts].map((p, i) => (i === 0 ? p : encodeURIComponent(p))).join("/");
}

/** A thumbnail of a gallery item as an object URL, and whether it is the no-image placeholder. */
export async function thumbnail(task, id, size = 160) {
  const path = `/v1/tasks/${encodeURIComponent(task)}/thumbnails/${encodeURIComponent(id)}?size=${size}`;
  const response = await send("GET", path);
  const placeholder = response.headers.get("X-UFO-Thumbnail") === "placeholder";
  return { url: URL.createObjectURL(await response.blob()), placeholder };
}
