// The only way the UI talks to the server: /api/v2.0 (Harbor-shaped) and the session login.

export const BASE = "/api/v2.0";
export const CSRF_COOKIE = "moorage_csrf";
export const CSRF_HEADER = "X-CSRF-Token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return "";
}

/** Whether this browser holds a UI session (its CSRF cookie is readable; the session cookie is not). */
export function hasSession() {
  return cookie(CSRF_COOKIE) !== "";
}

async function call(method, url, body) {
  // X-Requested-With: a 401 then carries no Basic challenge, which would open the browser's login dialog.
  const headers = { Accept: "application/json", "X-Requested-With": "XMLHttpRequest" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (!["GET", "HEAD"].includes(method)) headers[CSRF_HEADER] = cookie(CSRF_COOKIE);
  const response = await fetch(url, {
    method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (error) { data = null; }
  if (!response.ok) {
    const message = data && data.errors && data.errors[0] ? data.errors[0].message : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message);
  }
  return { data, response };
}

/** GET a path of the API: its JSON. */
export async function get(path, params) {
  const query = params ? `?${new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v != null))}` : "";
  return (await call("GET", BASE + path + query)).data;
}

/** GET a paged list: {items, total} (Harbor's X-Total-Count). */
export async function list(path, params) {
  const query = new URLSearchParams(Object.entries(params || {}).filter(([, v]) => v !== "" && v != null));
  const { data, response } = await call("GET", `${BASE}${path}?${query}`);
  const total = Number(response.headers.get("X-Total-Count") || (data || []).length);
  return { items: data || [], total };
}

/** GET a path whose error statuses still carry the answer (the health check's 503): {status, data}. */
export async function probe(path) {
  const response = await fetch(BASE + path, { headers: { Accept: "application/json", "X-Requested-With": "XMLHttpRequest" },
    credentials: "same-origin" });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (error) { data = null; }
  return { status: response.status, data };
}

/** GET a text answer (a GC log). */
export async function text(path) {
  const response = await fetch(BASE + path, { headers: { Accept: "text/plain, application/json", "X-Requested-With": "XMLHttpRequest" },
    credentials: "same-origin" });
  const body = await response.text();
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = JSON.parse(body).errors[0].message; } catch (error) { /* not JSON: keep the status */ }
    throw new ApiError(response.status, message);
  }
  return body;
}

export async function send(method, path, body) {
  return (await call(method, BASE + path, body)).data;
}

export async function login(principal, password) {
  return (await call("POST", "/c/login", { principal, password })).data;
}

export async function logout() {
  await call("POST", "/c/log_out");
}

/** A repository name inside its project, as Harbor's paths want it (encoded twice: team%252Fapp). */
export function repoPath(name) {
  return encodeURIComponent(encodeURIComponent(name));
}
