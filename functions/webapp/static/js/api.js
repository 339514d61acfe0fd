// The API client: same origin by default; an embedding page may hand over a user token and an
// API base in the URL fragment (#token=...&api=https://...). The token lives in sessionStorage
// only (gone with the tab), never in localStorage or a cookie.
const TOKEN_KEY = "mailsync.token";
const BASE_KEY = "mailsync.api";
const USER_KEY = "mailsync.user";
const EXP_KEY = "mailsync.expires";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

export function readFragment() {
  // Takes token and api from the fragment once, then removes them from the address bar.
  const frag = location.hash.replace(/^#/, "");
  if (!frag.includes("token=")) return false;
  const params = new URLSearchParams(frag);
  const token = params.get("token");
  const api = params.get("api");
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  if (api && /^(https:\/\/|http:\/\/(127\.0\.0\.1|localhost)(:\d+)?)/.test(api)) {
    sessionStorage.setItem(BASE_KEY, api.replace(/\/+$/, ""));
  }
  sessionStorage.setItem("mailsync.embedded", "1");
  history.replaceState(null, "", location.pathname + location.search + "#/mail");
  return Boolean(token);
}

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  get base() { return sessionStorage.getItem(BASE_KEY) || ""; },
  get user() { return sessionStorage.getItem(USER_KEY) || ""; },
  get embedded() { return sessionStorage.getItem("mailsync.embedded") === "1"; },
  set(token, user, expiresAt) {
    sessionStorage.setItem(TOKEN_KEY, token);
    if (user) sessionStorage.setItem(USER_KEY, user);
    if (expiresAt) sessionStorage.setItem(EXP_KEY, expiresAt);
  },
  clear() {
    for (const k of [TOKEN_KEY, BASE_KEY, USER_KEY, EXP_KEY, "mailsync.embedded"]) sessionStorage.removeItem(k);
  },
};

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

export async function request(method, path, { body, query, raw } = {}) {
  let url = session.base + path;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
    const s = q.toString();
    if (s) url += (url.includes("?") ? "&" : "?") + s;
  }
  const headers = {};
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(url, {
    method,
    headers,
    body: body !== undefined ? JSON.stringify(body) : undefined,
    credentials: "omit",
    referrerPolicy: "no-referrer",
  });
  if (res.status === 401) onUnauthorized();
  if (!res.ok) {
    let code = "", message = "";
    try { ({ code, message } = await res.json()); } catch { /* not JSON */ }
    throw new ApiError(res.status, code, message);
  }
  if (raw) return res;
  if (res.status === 204) return null;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

export const api = {
  get: (p, query) => request("GET", p, { query }),
  post: (p, body) => request("POST", p, { body: body ?? {} }),
  put: (p, body) => request("PUT", p, { body }),
  patch: (p, body) => request("PATCH", p, { body }),
  del: (p) => request("DELETE", p),
  blob: async (p) => (await request("GET", p, { raw: true })).blob(),
};

const enc = encodeURIComponent;
export const paths = {
  accounts: () => "/v1/accounts",
  account: (id) => `/v1/accounts/${enc(id)}`,
  folders: (id) => `/v1/accounts/${enc(id)}/folders`,
  thread: (id) => `/v1/threads/${enc(id)}`,
  message: (id) => `/v1/messages/${enc(id)}`,
  contact: (id) => `/v1/contacts/${enc(id)}`,
  enc,
};
