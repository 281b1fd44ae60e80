// One room WebSocket that stays open: it reconnects with backoff and jitter, resumes with
// since/epoch, drops durable events it already applied (by offset) and reports everything else.

import { AUTH, CloseCode, ErrorCode, Event, mayReconnect } from "./protocol.js";

/** Connection states of a RoomSocket. */
export const SocketState = Object.freeze({
  CONNECTING: "connecting", // the first attempt
  OPEN: "open", // the first frame arrived: the room is current
  RECONNECTING: "reconnecting", // dropped; waiting (backoff) or trying again
  CLOSED: "closed", // stopped: by close(), or a code that says not to come back
});

const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 15000;
const RESTART_DELAY_MS = [250, 1500]; // 1012: come back soon, at a random moment in this window
const FLOOD_PAUSE_MS = 5000;
const CLOCK_SAMPLES = 20;

/** A delay before attempt `attempt` (0, 1, 2 …): exponential with full jitter, never below `floor`. */
export function backoffDelay(attempt, floor = 0) {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
  return Math.max(floor, Math.round(ceiling / 2 + (Math.random() * ceiling) / 2));
}

/**
 * One room connection that stays connected.
 *
 * Callbacks (all optional):
 *  - onSnapshot(snapshot): a full state: render it from scratch (first connect, or recovery failed)
 *  - onEvent(event): one event to apply, in order; durable events arrive exactly once
 *  - onState(state, detail): SocketState changes; detail has {code, reason, delay, attempt}
 *  - onReply(reply): every ack/error (requests resolve their own promises too)
 *  - refreshToken(rejected): called after close 4500 with the token the server refused; returns a fresh one (or a
 *    promise of one); without one the socket closes
 */
export class RoomSocket {
  constructor({ roomId, token, base = location, onSnapshot, onEvent, onState, onReply, refreshToken }) {
    this.roomId = roomId;
    this.token = token;
    this.base = base;
    this.onSnapshot = onSnapshot || (() => {});
    this.onEvent = onEvent || (() => {});
    this.onState = onState || (() => {});
    this.onReply = onReply || (() => {});
    this.refreshToken = refreshToken || null;
    this.state = SocketState.CONNECTING;
    this.offset = null; // the highest durable offset applied
    this.epoch = null;
    this.attempt = 0;
    this.lastFirstFrame = null; // "snapshot" or "recovered": how the last (re)connection began
    this.reconnects = 0;
    this._ws = null;
    this._timer = null;
    this._nextId = 0;
    this._pending = new Map();
    this._clock = []; // samples of (server ts - local time), ms
    this._onOnline = () => this._retrySoon();
  }

  /** Connect (once); later drops reconnect by themselves until close(). */
  open() {
    window.addEventListener("online", this._onOnline);
    this._connect();
    return this;
  }

  /** Stop for good. */
  close() {
    window.removeEventListener("online", this._onOnline);
    clearTimeout(this._timer);
    this._setState(SocketState.CLOSED, { code: CloseCode.NORMAL });
    if (this._ws) this._ws.close(CloseCode.NORMAL);
    this._ws = null;
    this._failPending();
  }

  get connected() {
    return this.state === SocketState.OPEN;
  }

  /** The server's clock now (ms since the epoch), estimated from frame timestamps. */
  serverNow() {
    if (!this._clock.length) return Date.now();
    return Date.now() + Math.max(...this._clock);
  }

  /** Send a command without waiting for an answer (errors still reach onReply). False when offline. */
  send(type, fields = {}) {
    if (!this.connected) return false;
    this._ws.send(JSON.stringify({ type, ...fields }));
    return true;
  }

  /** Send a command with an id; resolves with the ack, rejects with the error ({code, message}). */
  request(type, fields = {}, timeoutMs = 8000) {
    if (!this.connected) {
      return Promise.reject(replyError(ErrorCode.DISCONNECTED, "You're offline for a moment; try again."));
    }
    const id = ++this._nextId;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(replyError(ErrorCode.UNAVAILABLE, "No answer from the server; try again."));
      }, timeoutMs);
      this._pending.set(id, { resolve, reject, timer });
      this._ws.send(JSON.stringify({ type, id, ...fields }));
    });
  }

  // --- the connection ------------------------------------------------------------------

  _url() {
    const scheme = this.base.protocol === "https:" ? "wss:" : "ws:";
    const query = new URLSearchParams();
    if (this.offset !== null && this.epoch !== null) {
      query.set("since", String(this.offset));
      query.set("epoch", this.epoch);
    }
    const search = query.toString() ? `?${query}` : "";
    return `${scheme}//${this.base.host}/ws/rooms/${encodeURIComponent(this.roomId)}${search}`;
  }

  _connect() {
    clearTimeout(this._timer);
    if (this.state === SocketState.CLOSED) return;
    const ws = new WebSocket(this._url());
    this._ws = ws;
    let first = true;
    ws.onopen = () => ws.send(JSON.stringify({ type: AUTH, token: this.token })); // never in the URL
    ws.onmessage = (message) => {
      if (ws !== this._ws) return;
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      this._sampleClock(frame.ts);
      if (first) {
        first = false;
        this.attempt = 0;
        this.lastFirstFrame = frame.type;
        this._setState(SocketState.OPEN, {});
      }
      this._frame(frame);
    };
    ws.onclose = (close) => {
      if (ws !== this._ws) return;
      this._ws = null;
      this._failPending();
      this._dropped(close.code, close.reason);
    };
  }

  _dropped(code, reason) {
    if (this.state === SocketState.CLOSED) return;
    if (code === CloseCode.INVALID_TOKEN && this.refreshToken) {
      this._setState(SocketState.RECONNECTING, { code, reason, delay: 0, attempt: this.attempt });
      Promise.resolve()
        .then(() => this.refreshToken(this.token))
        .then(
          (token) => {
            if (this.state === SocketState.CLOSED) return;
            if (!token) {
              this._setState(SocketState.CLOSED, { code, reason }); // signed out: nothing to come back with
              return;
            }
            this.token = token;
            this._schedule(backoffDelay(this.attempt++, 0), code, reason);
          },
          () => {
            // the refresh itself failed (offline, server busy): come back later and be refused again, then retry it
            if (this.state !== SocketState.CLOSED) this._schedule(backoffDelay(this.attempt++, 1000), code, reason);
          },
        );
      return;
    }
    if (!mayReconnect(code)) {
      this._setState(SocketState.CLOSED, { code, reason });
      return;
    }
    let delay;
    if (code === CloseCode.SERVER_RESTARTING && this.attempt === 0) {
      const [low, high] = RESTART_DELAY_MS;
      delay = Math.round(low + Math.random() * (high - low));
    } else if (code === CloseCode.FLOODING) {
      delay = backoffDelay(this.attempt, FLOOD_PAUSE_MS);
    } else {
      delay = backoffDelay(this.attempt, code === CloseCode.TRY_AGAIN_LATER ? 1000 : 0);
    }
    this.attempt += 1;
    this._schedule(delay, code, reason);
  }

  _schedule(delay, code, reason) {
    this.reconnects += 1;
    this._setState(SocketState.RECONNECTING, { code, reason, delay, attempt: this.attempt });
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._connect(), delay);
  }

  /** The network came back (or a gap was seen): try now instead of waiting out the backoff. */
  _retrySoon() {
    if (this.state === SocketState.RECONNECTING && !this._ws) {
      clearTimeout(this._timer);
      this._timer = setTimeout(() => this._connect(), Math.round(Math.random() * 300));
    }
  }

  _setState(state, detail) {
    const changed = state !== this.state;
    this.state = state;
    if (changed || state === SocketState.RECONNECTING) this.onState(state, detail);
  }

  _sampleClock(ts) {
    if (typeof ts !== "number") return;
    this._clock.push(ts - Date.now());
    if (this._clock.length > CLOCK_SAMPLES) this._clock.shift();
  }

  _failPending() {
    for (const { reject, timer } of this._pending.values()) {
      clearTimeout(timer);
      reject(replyError(ErrorCode.DISCONNECTED, "The connection dropped; try again."));
    }
    this._pending.clear();
  }

  // --- frames ----------------------------------------------------------------------------

  _frame(frame) {
    switch (frame.type) {
      case "snapshot":
        this.offset = frame.offset;
        this.epoch = frame.epoch;
        this.onSnapshot(frame);
        break;
      case "recovered":
        this.epoch = frame.epoch;
        for (const event of frame.events) this._apply(event);
        this.offset = Math.max(this.offset ?? 0, frame.offset);
        this.onEvent({ type: Event.VIEWERS, ts: frame.ts, count: frame.viewers });
        this.onEvent({ type: Event.LIKES, ts: frame.ts, total: frame.likes });
        break;
      case "batch":
        for (const event of frame.events) this._apply(event);
        break;
      case "ack":
      case "error":
        this._reply(frame);
        break;
      default:
        break;
    }
  }

  _apply(event) {
    const offset = event.offset;
    if (typeof offset === "number") {
      if (this.offset !== null && offset <= this.offset) return; // already applied
      // In a sampled chat stream (docs/protocol.md) `after` is the offset before this one: chat left out between.
      const previous = typeof event.after === "number" ? event.after : offset - 1;
      if (this.offset !== null && previous > this.offset) {
        // A gap: something was missed. Come back with since= and get it, in order.
        if (this._ws) this._ws.close(CloseCode.NORMAL);
        return;
      }
      this.offset = offset;
    }
    this.onEvent(event);
  }

  _reply(frame) {
    this.onReply(frame);
    const pending = this._pending.get(frame.id);
    if (!pending) return;
    this._pending.delete(frame.id);
    clearTimeout(pending.timer);
    if (frame.type === "ack") pending.resolve(frame);
    else pending.reject(replyError(frame.code, frame.message));
  }
}

function replyError(code, message) {
  const error = new Error(message);
  error.code = code;
  return error;
}
