// The REST API from the browser: JSON in and out, errors as ApiError, the guest identity of a viewer.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Call the API; resolve with the JSON body (null for 204); reject with ApiError. */
export async function api(path, { method = "GET", token, body, headers = {}, keepalive = false } = {}) {
  const init = { method, headers: { ...headers }, keepalive };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "network", "We couldn't reach the shop. Check your connection and try again.");
  }
  return readResponse(response);
}

export async function readResponse(response) {
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json().catch(() => null) : null;
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || `http_${response.status}`, error.message || response.statusText);
  }
  return data;
}

const GUEST_KEY = "livecart.guest";

/** The viewer's guest identity {token, user}: kept in localStorage, made once with POST /api/guest. */
export async function guest({ renew = false } = {}) {
  if (!renew) {
    try {
      const kept = JSON.parse(localStorage.getItem(GUEST_KEY) || "null");
      if (kept && kept.token && kept.user) return kept;
    } catch {
      // unreadable: make a new one
    }
  }
  const made = await api("/api/guest", { method: "POST" });
  try {
    localStorage.setItem(GUEST_KEY, JSON.stringify(made));
  } catch {
    // private mode: keep it for this page only
  }
  return made;
}

/** A random key (for Idempotency-Key headers). */
export function randomKey(prefix = "") {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return prefix + Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}
