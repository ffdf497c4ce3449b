// The API client: the access token lives in sessionStorage (gone when the tab closes).
const TOKEN = "sharpeyes.token";

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : (detail?.message ?? JSON.stringify(detail)));
    this.status = status;
    this.detail = detail;
  }
}

export const session = {
  get token() { return sessionStorage.getItem(TOKEN); },
  set token(v) { v ? sessionStorage.setItem(TOKEN, v) : sessionStorage.removeItem(TOKEN); },
  me: null,
  onExpired: () => {},
};

/** fetch with the Bearer token; JSON in and out unless `raw`. Throws ApiError with the server's detail. */
export async function api(path, { method = "GET", body, raw = false, headers = {}, signal } = {}) {
  const h = { ...headers };
  if (session.token) h.Authorization = `Bearer ${session.token}`;
  let payload = body;
  if (body !== undefined && typeof body !== "string" && !(body instanceof Blob)) {
    h["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const r = await fetch(path, { method, headers: h, body: payload, signal });
  if (r.status === 401 && session.token) {
    session.token = null;
    session.onExpired();
  }
  if (!r.ok) {
    let detail = r.statusText;
    try { detail = (await r.json()).detail ?? detail; } catch { /* not JSON */ }
    throw new ApiError(r.status, detail);
  }
  if (raw) return r;
  if (r.status === 204) return null;
  return r.json();
}

export async function signIn(username, password) {
  const pair = await api("/api/auth/token", { method: "POST", body: { username, password } });
  session.token = pair.access_token;
  session.me = await api("/api/me");
  return session.me;
}

export function signOut() {
  session.token = null;
  session.me = null;
}

/** A 15-minute token for URLs the browser fetches by itself (<video src>, WebSocket). */
export async function streamToken(cameraId) {
  return (await api(`/api/cameras/${encodeURIComponent(cameraId)}/stream-token`, { method: "POST" })).token;
}

/** Whether the signed-in role may use a page meant for `need` (mirrors streams/access/guard.py RIGHTS). */
export function may(need) {
  const role = session.me?.role;
  if (!role) return false;
  if (need === "viewer") return true;
  if (role === "admin") return true;
  return role === need;
}
