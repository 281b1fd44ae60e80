// One buyer's thread with a shop, as the room's "Ask the seller" panel and "My orders and messages" both show it
// (docs/customer-service.md): its messages (oldest first, "Load earlier"), "Seen", the staff's "typing…", the
// public-answer consent, the text box that sends each message once (its Idempotency-Key kept for a retry),
// delivery and read receipts, and the buyer's block of the shop. Every message is built as text, never as HTML.

import { api, randomKey, retrying } from "./api.js";
import { scrollToEnd } from "./chat-view.js";
import { t } from "./strings/room.js";
import { h, orderNumber, sentence, text } from "./ui.js";

const PAGE = 30; // messages per request
const TYPING_SHOWN_MS = 5000; // the staff's "typing…" goes away this long after their last signal
const TYPING_EVERY_MS = 3000; // the buyer's own typing signal, at most this often
export const MAX_MESSAGE_LENGTH = 1000; // SERVICE_MESSAGE_MAX_LENGTH

/** The short form of an order id people read: "s_9d93.1a2b3c4d5e6f" -> "1A2B3C". */
/** What a message (or a draft) is about, in words: `describe` knows product titles; else the ids. */
function aboutText(about, describe) {
  if (!about || (!about.product_id && !about.order_id)) return null;
  const described = describe ? describe(about) : null;
  if (described) return described;
  if (about.order_id) return t("thread.order", { number: orderNumber(about.order_id) });
  return t("thread.product", { id: about.product_id });
}

/** "14:05" today, "12 Mar, 14:05" another day. */
export function when(ms) {
  const date = new Date(Number(ms));
  if (Number.isNaN(date.getTime())) return "";
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (date.toDateString() === new Date().toDateString()) return time;
  return `${date.toLocaleDateString([], { day: "numeric", month: "short" })}, ${time}`;
}

/** A thread's last message as one line of text (the thread lists show it). */
export function lastLine(thread) {
  const last = thread?.last_message;
  if (!last) return "";
  if (typeof last === "string") return last;
  return last.side === "buyer" ? t("thread.you", { text: last.text || "" }) : last.text || "";
}

/**
 * The thread of the signed-in buyer with `merchantId`, built inside `root`.
 *
 *  - `roomId`: the room the buyer writes from (sent with each message; a question asked in a room may be answered
 *    in public there), or null.
 *  - `reading()`: true while the buyer can see the thread (the page says: its panel open, the tab visible); what
 *    arrives then is receipted as read, else only as delivered.
 *  - `describe({product_id, order_id})`: words for what a message is about (a product's title), or null.
 *  - `onThread(thread)`: the thread changed (unread count, blocked, staff_read); `onSignIn()`: the server wants a
 *    signed-in buyer.
 *
 * The page calls load() (again after a reconnect, or to poll), messageArrived(thread, message), threadChanged(thread)
 * and typingArrived(event) for what its socket brings, about(about) to attach a product or order to the next
 * message, seen() when the buyer starts reading, and setBlocked(blocked).
 */
export class ServiceThread {
  constructor({ root, session, merchantId, roomId = null, reading, describe, onThread, onSignIn, placeholder }) {
    this.session = session;
    this.merchantId = merchantId;
    this.roomId = roomId;
    this.reading = reading || (() => true);
    this.describe = describe || null;
    this.onThread = onThread || (() => {});
    this.onSignIn = onSignIn || null;
    this.thread = null;
    this.messages = new Map(); // message id (string) -> message
    this.nodes = new Map(); // message id -> {signature, node}: the list's items, kept while they don't change
    this.more = false; // older messages than the oldest shown exist
    this.loaded = false;
    this.loads = 0; // each load's number: an older answer arriving late is dropped
    this.blocked = false;
    this.draft = null; // the message being sent: {text, key, about}; kept after a failure, for its retry
    this.sending = false;
    this.attached = null; // what the next message is about: {product_id} or {order_id}
    this.receipted = { delivered: 0, read: 0 }; // the newest staff message each receipt was sent for
    this.receipting = null;
    this.typingTimer = null;
    this.typingSent = 0;
    this.deciding = new Set(); // staff messages whose public answer the buyer is deciding
    this._build(root, placeholder || t("thread.placeholder"));
  }

  get base() {
    return `/api/merchants/${encodeURIComponent(this.merchantId)}`;
  }

  // --- what the page tells us ---------------------------------------------------------------------------

  /** Read the newest messages and the thread (the first time, after a reconnect, or a poll); merged with those
   *  shown. Resolves false when the server refused (the error is shown). */
  async load() {
    const number = ++this.loads;
    if (!this.loaded) this.root.dataset.state = "loading";
    try {
      const answer = await api(`${this.base}/messages?limit=${PAGE}`, { session: this.session });
      if (number !== this.loads) return true;
      const messages = answer.messages || [];
      const newest = this._newestId();
      // a page that doesn't reach what is shown leaves a gap: start again from it
      if (answer.more && messages.length && newest && Number(messages[0].id) > newest) this._forget();
      if (!this.messages.size) this.more = Boolean(answer.more);
      const first = !this.loaded;
      this.loaded = true;
      this.root.dataset.state = "ready";
      for (const message of messages) this._put(message);
      this._thread(answer.thread, { fresh: first });
      if (!answer.thread) this.blocked = Boolean(answer.blocked); // blocked before ever writing
      this._render({ end: first });
      this._receipts();
      return true;
    } catch (error) {
      if (number !== this.loads) return true;
      if (!this.loaded) this.root.dataset.state = "error";
      this._refused(error, { retry: () => this.load() });
      return false;
    }
  }

  /** A message of this thread arrived (the socket's service.message, or another of the buyer's pages). */
  messageArrived(thread, message) {
    this._put(message);
    if (message.side === "staff") this._hideTyping();
    this._thread(thread);
    this._render({ end: message.side === "buyer" });
    this._receipts();
  }

  /** The thread changed (service.thread): receipts, blocked, unread. */
  threadChanged(thread) {
    this._thread(thread);
    this._render({});
  }

  /** Someone is typing (service.typing); only the staff's is shown. */
  typingArrived(event) {
    if (event.side !== "staff") return;
    text(this.typing, event.name ? t("thread.typingName", { name: event.name }) : t("thread.typing"));
    this.typing.hidden = false;
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => this._hideTyping(), TYPING_SHOWN_MS);
  }

  /** Attach a product or order to the next message ({product_id} or {order_id}, with an optional `label`), or
   *  null for none. */
  about(about) {
    this.attached = about && (about.product_id || about.order_id) ? { ...about } : null;
    this.aboutChip.hidden = !this.attached;
    const label = this.attached ? this.attached.label || aboutText(this.attached, this.describe) : null;
    text(this.aboutText, label ? `About: ${label}` : "");
  }

  /** The buyer is reading now (the panel opened, the tab came back): receipt what is shown as read. */
  seen() {
    this._render({});
    this._receipts();
  }

  focus() {
    if (!this.blocked) this.input.focus();
  }

  /** Block (or unblock) the shop: it can't write to the buyer, nor the buyer to it, until unblocked. */
  async setBlocked(blocked) {
    this._clearError();
    try {
      const answer = await api(`${this.base}/block`, { method: blocked ? "PUT" : "DELETE", session: this.session });
      if (answer?.thread) this._thread(answer.thread);
      this.blocked = typeof answer?.blocked === "boolean" ? answer.blocked : blocked;
      this._render({});
      return true;
    } catch (error) {
      this._refused(error, {});
      return false;
    }
  }

  /** Stop the timers (the page drops this thread). */
  stop() {
    this.loads += 1;
    clearTimeout(this.typingTimer);
  }

  // --- the DOM -----------------------------------------------------------------------------------------

  _build(root, placeholder) {
    this.root = root;
    root.classList.add("thread");
    root.dataset.state = "loading";
    this.earlier = h(
      "button.button-link.thread-earlier",
      { type: "button", hidden: true, on: { click: () => this._loadEarlier() } },
      t("thread.earlier"),
    );
    this.list = h("ol.thread-messages", { "aria-label": t("thread.messages"), "aria-live": "polite" });
    this.empty = h("p.thread-empty", { hidden: true }, t("thread.empty"));
    this.loading = h("p.thread-loading", {}, h("span.spinner.dark", { "aria-hidden": "true" }), t("thread.loading"));
    this.scroller = h("div.thread-scroll", {}, this.earlier, this.loading, this.empty, this.list);
    this.typing = h("p.thread-typing", { hidden: true, role: "status", dataset: { testid: "thread-typing" } });
    this.errorText = h("span");
    this.retry = h("button.thread-retry", { type: "button", hidden: true }, t("thread.retry"));
    this.error = h("div.form-error.thread-error", { role: "alert", hidden: true }, this.errorText, this.retry);
    this.unblock = h(
      "button.button-secondary.thread-unblock",
      { type: "button", on: { click: () => this.setBlocked(false) } },
      t("thread.unblock"),
    );
    this.blockedNote = h(
      "div.thread-blocked",
      { hidden: true, dataset: { testid: "thread-blocked" } },
      h("span", {}, t("thread.blocked")),
      this.unblock,
    );
    this.aboutText = h("span.thread-about-text");
    this.aboutChip = h(
      "div.thread-about",
      { hidden: true, dataset: { testid: "thread-about" } },
      this.aboutText,
      h(
        "button.thread-about-remove",
        { type: "button", "aria-label": t("thread.detach"), on: { click: () => this.about(null) } },
        "×",
      ),
    );
    this.input = h("textarea.thread-input", {
      name: "text",
      rows: 1,
      maxLength: MAX_MESSAGE_LENGTH,
      placeholder,
      "aria-label": t("thread.input"),
      enterkeyhint: "send",
      dataset: { testid: "thread-input" },
    });
    this.sendButton = h("button.thread-send", { type: "submit", dataset: { testid: "thread-send" } }, t("thread.send"));
    this.form = h("form.thread-form", { autocomplete: "off" }, this.input, this.sendButton);
    this.form.addEventListener("submit", (submit) => {
      submit.preventDefault();
      this._send();
    });
    this.input.addEventListener("keydown", (key) => {
      if (key.key === "Enter" && !key.shiftKey && !key.isComposing) {
        key.preventDefault();
        this.form.requestSubmit();
      }
    });
    this.input.addEventListener("input", () => this._typed());
    // a tap on Send leaves the focus (and a phone's keyboard) in the text box
    this.sendButton.addEventListener("pointerdown", (press) => {
      if (document.activeElement === this.input) press.preventDefault();
    });
    root.replaceChildren(this.scroller, this.typing, this.blockedNote, this.error, this.aboutChip, this.form);
  }

  /** Draw the list: unchanged messages keep their nodes (and their focus); "Seen" under the buyer's newest message
   *  the staff have read. `end`: scroll to the newest; `earlier`: older messages came in above. */
  _render({ end = false, earlier = false }) {
    const messages = this._sorted();
    const seen = this._seenId(messages);
    const nodes = messages.map((message) => {
      const key = String(message.id);
      const signature = JSON.stringify([message, Number(message.id) === seen, this.deciding.has(key)]);
      let kept = this.nodes.get(key);
      if (!kept || kept.signature !== signature) {
        kept = { signature, node: this._item(message, Number(message.id) === seen) };
        this.nodes.set(key, kept);
      }
      return kept.node;
    });
    const list = this.list;
    const scroller = this.scroller;
    const same = nodes.length === list.children.length && nodes.every((node, index) => list.children[index] === node);
    if (!same) {
      const fromBottom = scroller.scrollHeight - scroller.scrollTop;
      const nearEnd = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
      list.replaceChildren(...nodes);
      if (earlier) scroller.scrollTop = scroller.scrollHeight - fromBottom;
      else if (end || nearEnd) scrollToEnd(scroller, true);
    } else if (end) {
      scrollToEnd(scroller, true);
    }
    this.empty.hidden = !this.loaded || messages.length > 0;
    this.earlier.hidden = !this.more;
    this.blockedNote.hidden = !this.blocked;
    this.form.hidden = this.blocked;
    this.aboutChip.hidden = !this.attached || this.blocked;
    this.root.dataset.blocked = String(this.blocked);
  }

  _item(message, seen) {
    const mine = message.side === "buyer";
    const about = aboutText(message, this.describe);
    const item = h(
      "li.thread-message",
      { dataset: { id: String(message.id), side: message.side, testid: "thread-message" } },
      mine ? null : h("span.thread-author", {}, message.author_name || t("thread.theShop")),
      about ? h("span.thread-about-line", {}, t("thread.about", { about })) : null,
      h("p.thread-text", {}, message.text),
    );
    const asked = message.public;
    if (asked && asked.state) {
      item.dataset.public = asked.state;
      const quote = asked.question ? h("blockquote.thread-question", {}, t("thread.question", { question: asked.question })) : null;
      if (quote) item.insertBefore(quote, item.lastChild); // above the answer's text
      item.append(this._publicPart(message));
    }
    item.append(
      h(
        "span.thread-meta",
        {},
        h("time", { dateTime: new Date(Number(message.at) || 0).toISOString() }, when(message.at)),
        seen ? h("span.thread-seen", { dataset: { testid: "thread-seen" } }, t("thread.seen")) : null,
      ),
    );
    return item;
  }

  /** The consent a public answer needs ("Allow" / "Keep private"), or what was decided. */
  _publicPart(message) {
    const state = message.public.state;
    if (state === "posted") return h("p.thread-public-note", {}, t("thread.posted"));
    if (state === "declined") return h("p.thread-public-note", {}, t("thread.declined"));
    const busy = this.deciding.has(String(message.id));
    const button = (allow, label, kind) =>
      h(
        kind,
        {
          type: "button",
          disabled: busy,
          dataset: { consent: allow ? "allow" : "decline", testid: allow ? "consent-allow" : "consent-decline" },
          on: { click: () => this._decide(message, allow) },
        },
        label,
      );
    return h(
      "div.thread-consent",
      { dataset: { testid: "thread-consent" } },
      h("p", {}, t("thread.consent")),
      h(
        "div.thread-consent-actions",
        {},
        button(true, t("thread.allow"), "button.button-primary"),
        button(false, t("thread.private"), "button.button-secondary"),
      ),
    );
  }

  _hideTyping() {
    clearTimeout(this.typingTimer);
    this.typing.hidden = true;
  }

  _refused(error, { retry = null }) {
    if (error.code === "sign_in_required" || error.status === 401) {
      this.onSignIn?.();
      return;
    }
    if (error.code === "merchant_blocked") {
      this.blocked = true;
      this._render({});
    }
    text(this.errorText, sentence(error.message || t("thread.failed")));
    this.error.dataset.code = error.code || "";
    this.error.hidden = false;
    const again = retry && (error.status === 0 || error.status >= 500 || error.code === "rate_limited");
    this.retry.hidden = !again;
    this.retry.onclick = again ? () => retry() : null;
  }

  _clearError() {
    this.error.hidden = true;
    delete this.error.dataset.code;
  }

  // --- the record ----------------------------------------------------------------------------------------

  _put(message) {
    if (message && message.id !== undefined && message.id !== null) this.messages.set(String(message.id), message);
  }

  _forget() {
    this.messages.clear();
    this.nodes.clear();
  }

  _sorted() {
    return [...this.messages.values()].sort((a, b) => Number(a.id) - Number(b.id));
  }

  _newestId(side = null) {
    let newest = 0;
    for (const message of this.messages.values()) {
      if (!side || message.side === side) newest = Math.max(newest, Number(message.id));
    }
    return newest;
  }

  /** The buyer's newest message the staff have read (its id), or 0. */
  _seenId(messages) {
    const read = Number(this.thread?.staff_read) || 0;
    for (let index = messages.length - 1; index >= 0; index--) {
      const message = messages[index];
      if (message.side === "buyer" && Number(message.id) <= read) return Number(message.id);
    }
    return 0;
  }

  /** Keep the newest thread; `fresh`: the first read, whose unread count says what was read already. */
  _thread(thread, { fresh = false } = {}) {
    if (!thread) return;
    const known = this.thread;
    const staffRead = Math.max(Number(known?.staff_read) || 0, Number(thread.staff_read) || 0);
    this.thread = { ...thread, staff_read: staffRead };
    this.blocked = Boolean(thread.blocked);
    if (fresh && !Number(thread.unread)) {
      // nothing unread: every staff message shown was delivered and read already
      const newest = this._newestStaff(thread);
      this.receipted.delivered = Math.max(this.receipted.delivered, newest);
      this.receipted.read = Math.max(this.receipted.read, newest);
    }
    this.onThread(this.thread);
  }

  _newestStaff(thread) {
    const last = thread?.last_message;
    const fromThread = last && typeof last === "object" && last.side === "staff" ? Number(last.id) || 0 : 0;
    return Math.max(fromThread, this._newestId("staff"));
  }

  // --- the server ----------------------------------------------------------------------------------------------

  async _loadEarlier() {
    const oldest = this._sorted()[0];
    if (!oldest) return;
    this.earlier.disabled = true;
    try {
      const query = new URLSearchParams({ before: String(oldest.id), limit: String(PAGE) });
      const answer = await api(`${this.base}/messages?${query}`, { session: this.session });
      for (const message of answer.messages || []) this._put(message);
      this.more = Boolean(answer.more);
      this._render({ earlier: true });
    } catch (error) {
      this._refused(error, { retry: () => this._loadEarlier() });
    } finally {
      this.earlier.disabled = false;
    }
  }

  /** Send what is in the text box. One Idempotency-Key per message, kept while the same text is retried (a reply
   *  lost on the way, a 503), so the shop gets it once; a new text gets a new key. */
  async _send() {
    const value = this.input.value.trim();
    if (!value || this.sending || this.blocked) return;
    const about = this.attached;
    const draft = this.draft;
    const same = draft && draft.text === value && JSON.stringify(draft.about) === JSON.stringify(about);
    if (!same) this.draft = { text: value, key: randomKey("msg_"), about };
    const { key } = this.draft;
    const body = { text: value };
    if (this.roomId) body.room_id = this.roomId;
    if (about?.order_id) body.order_id = about.order_id;
    if (about?.product_id) body.product_id = about.product_id;
    this.sending = true;
    this.sendButton.disabled = true;
    this.form.dataset.sending = "true";
    text(this.sendButton, t("thread.sending"));
    this._clearError();
    try {
      const answer = await retrying(() =>
        api(`${this.base}/messages`, {
          method: "POST",
          session: this.session,
          body,
          headers: { "Idempotency-Key": key },
        }),
      );
      if (this.draft?.key === key) this.draft = null;
      if (this.input.value.trim() === value) this.input.value = "";
      if (JSON.stringify(this.attached) === JSON.stringify(about)) this.about(null);
      this._put(answer.message);
      this._thread(answer.thread);
      this.loaded = true;
      this.root.dataset.state = "ready";
      this._render({ end: true });
    } catch (error) {
      this._refused(error, { retry: () => this.form.requestSubmit() }); // the text stays in the box
    } finally {
      this.sending = false;
      this.sendButton.disabled = false;
      delete this.form.dataset.sending;
      text(this.sendButton, t("thread.send"));
    }
  }

  /** The buyer typed: tell the staff, at most once every few seconds. */
  _typed() {
    const now = Date.now();
    if (!this.input.value.trim() || now - this.typingSent < TYPING_EVERY_MS) return;
    this.typingSent = now;
    api(`${this.base}/messages/typing`, { method: "POST", session: this.session }).catch(() => {});
  }

  /** Receipt the newest staff message: delivered (this page has it), and read while the buyer is reading. One
   *  request at a time; what arrives meanwhile is receipted after it. */
  async _receipts() {
    if (this.receipting) {
      this.receipting.again = true;
      return;
    }
    const newest = this._newestId("staff");
    const body = {};
    if (newest > this.receipted.delivered) body.delivered = newest;
    if (newest > this.receipted.read && this.reading()) body.read = newest;
    if (!Object.keys(body).length) return;
    this.receipting = { again: false };
    try {
      const answer = await api(`${this.base}/messages/receipt`, { method: "POST", session: this.session, body });
      if (body.delivered) this.receipted.delivered = Math.max(this.receipted.delivered, body.delivered);
      if (body.read) {
        this.receipted.read = Math.max(this.receipted.read, body.read);
        this.receipted.delivered = Math.max(this.receipted.delivered, body.read);
      }
      if (answer?.thread) this._thread(answer.thread);
    } catch {
      // the next message, load or reading tries again
    } finally {
      const again = this.receipting.again;
      this.receipting = null;
      if (again) this._receipts();
    }
  }

  /** The buyer's answer to "may we answer this in public?". */
  async _decide(message, allow) {
    const key = String(message.id);
    if (this.deciding.has(key)) return;
    this.deciding.add(key);
    this._render({});
    this._clearError();
    try {
      const answer = await api(`${this.base}/messages/${encodeURIComponent(key)}/public`, {
        method: "POST",
        session: this.session,
        body: { allow },
      });
      this._put(answer.message);
      this._thread(answer.thread);
    } catch (error) {
      this._refused(error, { retry: () => this._decide(message, allow) });
      if (error.code === "not_asked") this.load(); // decided already (another page): show how
    } finally {
      this.deciding.delete(key);
      this._render({});
    }
  }
}
