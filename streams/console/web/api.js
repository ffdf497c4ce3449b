// The API client: the access and refresh tokens live in sessionStorage (gone when the tab closes).
// Access tokens last 15 minutes; on a 401 the client refreshes once (the refresh token is
// single-use and rotates) and repeats the request.
const TOKEN = "sharpeyes.token";
const REFRESH = "sharpeyes.refresh";

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
  get refresh() { return sessionStorage.getItem(REFRESH); },
  set refresh(v) { v ? sessionStorage.setItem(REFRESH, v) : sessionStorage.removeItem(REFRESH); },
  me: null,
  onExpired: () => {},
};

let refreshing = null;

/** A new access token from the refresh token (one request at a time); false when the sign-in is over. */
export async function renewToken() {
  if (!session.refresh) return false;
  refreshing ??= (async () => {
    const r = await fetch("/api/auth/refresh", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: session.refresh }),
    });
    if (!r.ok) { session.refresh = null; return false; }
    const pair = await r.json();
    session.token = pair.access_token;
    session.refresh = pair.refresh_token;
    return true;
  })().finally(() => { refreshing = null; });
  return refreshing;
}

/** fetch with the Bearer token; JSON in and out unless `raw`. Throws ApiError with the server's detail. */
export async function api(path, { method = "GET", body, raw = false, headers = {}, signal } = {}) {
  let payload = body;
  const h = { ...headers };
  if (body !== undefined && typeof body !== "string" && !(body instanceof Blob)) {
    h["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const send = () => fetch(path, {
    method, headers: session.token ? { ...h, Authorization: `Bearer ${session.token}` } : h, body: payload, signal,
  });
  let r = await send();
  if (r.status === 401 && session.token && path !== "/api/auth/token" && await renewToken()) r = await send();
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
  session.refresh = pair.refresh_token;
  session.me = await api("/api/me");
  return session.me;
}

/** End the sign-in on the server too: its tokens stop working and its live views end. */
export function signOut() {
  if (session.token) {
    fetch("/api/auth/signout", { method: "POST", headers: { Authorization: `Bearer ${session.token}` }, keepalive: true })
      .catch(() => {});
  }
  session.token = null;
  session.refresh = null;
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
