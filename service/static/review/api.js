// The review page's one door to the service: JSON calls to /v1 with the signed-in API key.
// Errors become ApiError carrying the HTTP status and the service's own `detail`, which already
// says what to do; nothing here touches the DOM.

// Relative to this file (/review/api.js), so a proxy serving the service under a prefix works.
const API_ROOT = new URL("../v1/", import.meta.url);

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.name = "ApiError";
    this.status = status; // 0: the service could not be reached
    this.detail = detail;
  }
}

/** A key can only travel in a header if it is printable ASCII without spaces. */
export function isSendableKey(key) {
  return /^[\x21-\x7e]+$/.test(key);
}

/**
 * Call `method path` (relative to /v1/) with the key; resolves to the parsed JSON body.
 * query: {name: value}, where null, undefined and "" are left out. body: sent as JSON.
 */
export async function call(key, method, path, { query, body } = {}) {
  const url = new URL(path, API_ROOT);
  for (const [name, value] of Object.entries(query ?? {})) {
    if (value !== null && value !== undefined && value !== "") {
      url.searchParams.set(name, String(value));
    }
  }
  const headers = { Accept: "application/json", "X-API-Key": key };
  const init = { method, headers, cache: "no-store", redirect: "error" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    throw new ApiError(0, `cannot reach the service (${error.message}): check the connection and retry`);
  }
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    let detail = parsed && typeof parsed.detail === "string" ? parsed.detail : `HTTP ${response.status}`;
    if (response.status === 503) {
      const retry = response.headers.get("Retry-After");
      detail += retry ? ` (retry in ${retry} s)` : "";
    }
    throw new ApiError(response.status, detail);
  }
  return parsed;
}

export const api = {
  me: (key) => call(key, "GET", "me"),
  queue: (key, query) => call(key, "GET", "predictions", { query }),
  prediction: (key, id) => call(key, "GET", `predictions/${encodeURIComponent(id)}`),
  feedback: (key, id, feedback) =>
    call(key, "POST", `predictions/${encodeURIComponent(id)}/feedback`, { body: feedback }),
  searchCodes: (key, q, limit = 20) => call(key, "GET", "codes", { query: { q, limit } }),
  code: (key, code) => call(key, "GET", `codes/${encodeURIComponent(code)}`),
  predict: (key, note) => call(key, "POST", "predictions", { body: note }),
};
