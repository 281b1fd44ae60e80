// The REST API from the browser: JSON in and out, errors as ApiError, and the one Session both pages sign in with.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** One request; resolves with the Response (any status), rejects with ApiError only when the network fails. */
async function send(path, { method = "GET", token, body, headers = {}, keepalive = false } = {}) {
  const init = { method, headers: { ...headers }, keepalive };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  try {
    return await fetch(path, init);
  } catch {
    throw new ApiError(0, "network", "We couldn't reach the shop. Check your connection and try again.");
  }
}

/**
 * Call the API; resolve with the JSON body (null for 204); reject with ApiError. With `session`, the call carries
 * its access token (refreshed when close to expiry); a 401 refreshes it once more and tries again.
 */
export async function api(path, { session, ...options } = {}) {
  const token = session ? await session.token() : null;
  try {
    return await readResponse(await send(path, { ...options, token }));
  } catch (error) {
    if (!session || !token || error.status !== 401) throw error;
    const fresh = await session.token({ rejected: token });
    if (!fresh) throw error;
    return readResponse(await send(path, { ...options, token: fresh }));
  }
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

/** `{email}` or `{phone}` from what a person typed in one field (a phone number starts with +). */
export function destinationOf(value) {
  const typed = String(value || "").trim();
  return typed.includes("@") || !/^\+?[\d\s().-]+$/.test(typed) ? { email: typed } : { phone: typed };
}

/** window.localStorage or window.sessionStorage; null where the browser refuses storage. */
export function storage(kind) {
  try {
    return kind === "session" ? window.sessionStorage : window.localStorage;
  } catch {
    return null;
  }
}

/**
 * What this browser keeps per person under one key of `store` (from storage()): read(person) is theirs (undefined for
 * nothing kept, or storage refused); write(person, value) keeps it, undefined forgets it.
 */
export function perPerson(store, key) {
  const all = () => JSON.parse(store?.getItem(key) || "{}");
  return {
    read(person) {
      try {
        return all()[person];
      } catch {
        return undefined;
      }
    },
    write(person, value) {
      try {
        const kept = all();
        if (value === undefined) delete kept[person];
        else kept[person] = value;
        store?.setItem(key, JSON.stringify(kept));
      } catch {
        // storage refused: what was written lives as long as the page
      }
    },
  };
}

const DEVICE_KEY = "livecart.device";
const REFRESH_MARGIN_MS = 60000;

/**
 * A signed-in browser: its short-lived access token, the refresh token that renews it, and who it is.
 *
 * Kept in `store` (localStorage for shoppers, sessionStorage for the studio) under `key`. token()
 * refreshes when less than a minute is left; every caller at that moment shares the one refresh,
 * and tabs sharing the storage take turns (Web Locks) so a rotated refresh token is never used twice.
 * A refresh answered 401 drops the session: token() then resolves null.
 */
export class Session {
  constructor(store, key) {
    this.store = store;
    this.key = key;
    this._data = this._read();
    this._refreshing = null;
    this._listeners = [];
    addEventListener("storage", (change) => {
      if (change.storageArea === this.store && change.key === this.key) this._adopt();
    });
  }

  /** The user {id, name, guest, phone_verified, roles, expires}, or null when signed out. */
  get user() {
    return this._data ? this._data.user : null;
  }

  /** Call `listener(user)` whenever the person changes: signed in, signed out, dropped, or changed in another tab. */
  onChange(listener) {
    this._listeners.push(listener);
  }

  /** A fresh access token (null without a session). `rejected`: the server refused this one, so renew it. */
  async token({ rejected } = {}) {
    const data = this._data;
    if (!data) return null;
    if (data.token !== rejected && fresh(data)) return data.token;
    if (!this._refreshing) {
      this._refreshing = this._locked(() => this._refresh(rejected)).finally(() => {
        this._refreshing = null;
      });
    }
    return this._refreshing;
  }

  /** A new guest session (its device id is kept and sent back, so bans follow the browser). */
  async guest() {
    const local = storage("local");
    const device = local?.getItem(DEVICE_KEY);
    const issued = await this._start("/api/guest", { body: device ? { device } : {} });
    if (issued.device) local?.setItem(DEVICE_KEY, issued.device);
    return issued.user;
  }

  /** Send a one-time code to `{email}` or `{phone}`; resolves with {sent_to, expires_in}. */
  async sendCode(destination) {
    return readResponse(await send("/api/sign-in/code", { method: "POST", body: destination }));
  }

  /** Sign in with the code sent to `destination`; a guest's orders become the member's (the server ends the
   * guest's session), and a member who signs in as someone else signs the earlier session out. */
  async signIn(destination, code) {
    const body = { ...destination, code: String(code).trim() };
    const before = this.user;
    const token = before ? await this.token().catch(() => null) : null;
    const guestToken = before?.guest ? token : null;
    let issued;
    try {
      issued = await this._start("/api/sign-in", { body, token: guestToken });
    } catch (error) {
      if (error.status !== 401 || !guestToken) throw error;
      issued = await this._start("/api/sign-in", { body }); // the guest's session had ended: sign in without it
    }
    if (token && !before.guest) send("/api/sessions/sign-out", { method: "POST", token, body: {} }).catch(() => {});
    return issued;
  }

  /** Sign in with a single-use login link's ticket. */
  async redeemLink(ticket) {
    return this._start("/api/sign-in/link", { body: { ticket } });
  }

  /** Sign out on the server (this session, or every one of the user's), then forget the session here. */
  async signOut({ everywhere = false } = {}) {
    try {
      const token = await this.token();
      if (token) await send("/api/sessions/sign-out", { method: "POST", token, body: { everywhere } });
    } catch {
      // offline or already signed out: forgetting it here is what matters
    }
    this.forget();
  }

  /** Forget the session here without telling the server (it already ended it). */
  forget() {
    this._write(null);
  }

  // --- inside ------------------------------------------------------------------------------

  async _start(path, { body, token }) {
    const response = await send(path, { method: "POST", body, token });
    const issued = await readResponse(response);
    this._write(kept(issued, response));
    return issued;
  }

  async _refresh(rejected) {
    this._adopt(); // another tab may have refreshed already
    const data = this._data;
    if (!data) return null;
    if (data.token !== rejected && fresh(data)) return data.token;
    const response = await send("/api/sessions/refresh", { method: "POST", body: { refresh_token: data.refresh_token } });
    if (response.status === 401) {
      if (this._data === data) this.forget();
      return null;
    }
    this._write(kept(await readResponse(response), response));
    return this._data.token;
  }

  _locked(work) {
    return navigator.locks ? navigator.locks.request(`${this.key}.refresh`, work) : work();
  }

  _read() {
    try {
      const data = JSON.parse(this.store?.getItem(this.key) || "null");
      return data && data.token && data.refresh_token && data.user ? data : null;
    } catch {
      return null;
    }
  }

  _adopt() {
    if (!this.store) return;
    const stored = this._read();
    if (stored?.refresh_token !== this._data?.refresh_token) this._set(stored);
  }

  _write(data) {
    try {
      if (data) this.store?.setItem(this.key, JSON.stringify(data));
      else this.store?.removeItem(this.key);
    } catch {
      // storage full or refused: the session lives as long as this page
    }
    this._set(data);
  }

  _set(data) {
    const before = this.user;
    this._data = data;
    if (person(before) !== person(this.user)) for (const listener of this._listeners) listener(this.user);
  }
}

/** What a session keeps: the answer, with its expiry on this browser's clock (the server's Date header). */
function kept(issued, response) {
  const serverNow = Date.parse(response.headers.get("date") || "") || Date.now();
  const lifetime = issued.expires_at * 1000 - serverNow;
  return {
    token: issued.token,
    refresh_token: issued.refresh_token,
    user: issued.user,
    expires_at: issued.expires_at,
    renew_at: Date.now() + lifetime - Math.min(REFRESH_MARGIN_MS, lifetime / 2),
  };
}

/** Who a user is, as a string to compare (without the expiry that changes with every refresh). */
function person(user) {
  return user ? JSON.stringify({ ...user, expires: 0 }) : "";
}

function fresh(data) {
  return Date.now() < data.renew_at;
}

/** A random key (for Idempotency-Key headers). */
export function randomKey(prefix = "") {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return prefix + Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** Retry a request that is safe to repeat (same Idempotency-Key) when the network or server hiccups. */
export async function retrying(call, attempts = 3) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      const transient = error instanceof ApiError && (error.status === 0 || error.status >= 500);
      if (!transient || attempt + 1 >= attempts) throw error;
      await new Promise((resolve) => setTimeout(resolve, 400 * 2 ** attempt));
    }
  }
}
