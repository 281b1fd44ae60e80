// "Ask the seller" in the viewer room (docs/customer-service.md): the button and its unread badge, the panel (a
// bottom sheet on a phone, a side panel on a wide screen) with the buyer's thread with the room's shop, "Ask about
// this" on the product card and on the checkout's order, and the personal service.* events of the room socket.

import { api } from "./api.js";
import { Event } from "./protocol.js";
import { ServiceThread } from "./service-thread.js";
import { t } from "./strings/room.js";
import { $, orderNumber, text, toast } from "./ui.js";

const SIDE_PANEL = matchMedia("(min-width: 1000px)"); // beside the stage; narrower: a sheet over it

/**
 * The room page's customer service. `room` is the page's RoomState, `session` its Session; `signIn({reason, then})`
 * opens the page's sign-in dialog. The page calls snapshot() after each snapshot, connected() each time its socket
 * (re)connects (events may have been missed meanwhile) and eventArrived(event) for every service.* event.
 */
export class AskSeller {
  constructor({ room, session, roomId, toasts, signIn }) {
    this.room = room;
    this.session = session;
    this.roomId = roomId;
    this.toasts = toasts;
    this.signIn = signIn;
    this.panel = $("#ask-panel");
    this.thread = null; // the ServiceThread with the room's shop (a member's)
    this.unread = 0;
    this.person = session.user?.id ?? null;
    this._wire();
    session.onChange((user) => this._personChanged(user));
  }

  // --- what the page tells us ---------------------------------------------------------------------------

  /** A snapshot arrived: the room's shop is known; read the thread when it is new to us. */
  snapshot() {
    if (!this.thread || this.thread.merchantId !== this.room.merchantId) this._load();
    this._render();
  }

  /** The socket is open again: what came while it was away is read again (unread counts stay right). */
  connected() {
    if (this.room.merchantId) this._load();
  }

  /** A personal service.* event (protocol.js PERSONAL_EVENTS). */
  eventArrived(event) {
    const thread = event.thread;
    const ours = (merchantId) => Boolean(this.thread && merchantId && merchantId === this.thread.merchantId);
    switch (event.type) {
      case Event.SERVICE_MESSAGE:
        if (!event.message) return;
        if (ours(thread?.merchant_id)) {
          this.thread.messageArrived(thread, event.message); // receipts it: delivered, and read when open
        } else if (event.message.side === "staff" && thread?.merchant_id) {
          this._delivered(thread.merchant_id, event.message.id); // another shop's answer: this page got it
          const shop = thread.merchant_name || `@${thread.merchant_id}`;
          toast(this.toasts, t("ask.answered", { shop }), { ms: 6000 });
        }
        break;
      case Event.SERVICE_THREAD:
        if (thread && ours(thread.merchant_id)) this.thread.threadChanged(thread);
        break;
      case Event.SERVICE_TYPING:
        if (ours(event.merchant_id)) this.thread.typingArrived(event);
        break;
      default:
        break;
    }
  }

  /** Open the panel; `about` ({product_id} or {order_id}, with a `label`) is attached to the next message. A guest
   *  signs in first. */
  open(about = null) {
    if (!this._member()) {
      this.signIn({ reason: t("ask.signIn"), then: () => this.open(about) });
      return;
    }
    if (!this.room.merchantId) return; // the room hasn't arrived yet
    if (!this.thread) this._load();
    if (!this.panel.open) {
      this.panel.dataset.mode = SIDE_PANEL.matches ? "side" : "sheet";
      if (SIDE_PANEL.matches) this.panel.show();
      else this.panel.showModal();
    }
    if (about) this.thread.about(about);
    this._render();
    this.thread.seen();
    if (about || SIDE_PANEL.matches) this.thread.focus();
  }

  close() {
    if (this.panel.open) this.panel.close();
  }

  // --- the panel ---------------------------------------------------------------------------------------

  _wire() {
    $("#ask-button").addEventListener("click", () => (this.panel.open ? this.close() : this.open()));
    $("#ask-close").addEventListener("click", () => this.close());
    this.panel.addEventListener("close", () => {
      $("#ask-menu").open = false;
      this._render();
    });
    this.panel.addEventListener("click", (click) => {
      if (click.target === this.panel) this.close(); // a tap on the backdrop
    });
    // Escape closes the panel only, not the room's sheet under it (a checkout the question is about); the side
    // panel (not modal) closes on it while it has the focus.
    addEventListener(
      "keydown",
      (key) => {
        if (key.key !== "Escape" || !this.panel.open) return;
        const side = this.panel.dataset.mode === "side";
        if (side && !this.panel.contains(document.activeElement)) return;
        key.stopImmediatePropagation();
        if (side) this.close();
      },
      true,
    );
    $("#ask-block").addEventListener("click", async () => {
      $("#ask-menu").open = false;
      if (this.thread) await this.thread.setBlocked(!this.thread.blocked);
      this._render();
    });
    $("#card-ask").addEventListener("click", () => {
      const productId = $("#card").dataset.productId;
      if (productId) this.open({ product_id: productId, label: this._productTitle(productId) || undefined });
    });
    $("#order-ask").addEventListener("click", () => {
      const orderId = $("#checkout").dataset.orderId;
      if (!orderId) return;
      const title = $("#order-title").textContent.trim();
      const number = orderNumber(orderId);
      this.open({ order_id: orderId, label: title ? t("ask.orderTitle", { number, title }) : t("ask.order", { number }) });
    });
    document.addEventListener("visibilitychange", () => {
      if (this._reading()) this.thread.seen();
    });
    const messagesLink = `/messages.html?room=${encodeURIComponent(this.roomId)}`;
    for (const link of document.querySelectorAll("a[href='/messages.html']")) link.href = messagesLink;
  }

  /** Read the thread with the room's shop (a member's; a guest has none). */
  _load() {
    const merchantId = this.room.merchantId;
    if (!merchantId || !this._member()) return;
    if (!this.thread || this.thread.merchantId !== merchantId) {
      this.thread?.stop();
      this.thread = new ServiceThread({
        root: $("#ask-thread"),
        session: this.session,
        merchantId,
        roomId: this.roomId,
        reading: () => this._reading(),
        describe: (about) => this._describe(about),
        onThread: (thread) => {
          this.unread = Number(thread.unread) || 0;
          this._render();
        },
        onSignIn: () => {
          this.close();
          this.signIn({ reason: t("ask.signIn"), then: () => this.open() });
        },
        placeholder: t("ask.placeholder"),
      });
    }
    this.thread.load();
  }

  _render() {
    const open = this.panel.open;
    const badge = $("#ask-badge");
    const shown = !open && this.unread > 0 && this._member();
    badge.hidden = !shown;
    text(badge, this.unread > 99 ? "99+" : String(this.unread));
    $("#ask-button").setAttribute(
      "aria-label",
      shown ? t("ask.unread", { count: this.unread }) : t("ask.heading"),
    );
    $("#ask-button").setAttribute("aria-expanded", String(open));
    const merchant = this.room.merchantId;
    text($("#ask-shop"), this.thread?.thread?.merchant_name || (merchant ? `@${merchant}` : ""));
    text($("#ask-block"), this.thread?.blocked ? t("ask.unblock") : t("ask.block"));
    $("#ask-block").disabled = !this.thread;
  }

  /** The buyer sees the thread: the panel is open and the tab visible. */
  _reading() {
    return Boolean(this.thread && this.panel.open && document.visibilityState === "visible");
  }

  /** A product's title as the room knows it (pinned, in the bag, on sale). */
  _productTitle(productId) {
    const room = this.room;
    if (room.pinned?.id === productId) return room.pinned.title;
    const inBag = room.bag.find((product) => product.id === productId);
    if (inBag) return inBag.title;
    for (const sale of room.sales.values()) if (sale.product?.id === productId) return sale.product.title;
    return null;
  }

  _describe(about) {
    if (about.order_id) return t("ask.order", { number: orderNumber(about.order_id) });
    return this._productTitle(about.product_id);
  }

  /** Receipt another shop's message as delivered (this page received it; the panel shows only the room's shop). */
  _delivered(merchantId, messageId) {
    api(`/api/merchants/${encodeURIComponent(merchantId)}/messages/receipt`, {
      method: "POST",
      session: this.session,
      body: { delivered: messageId },
    }).catch(() => {});
  }

  _personChanged(user) {
    const person = user?.id ?? null;
    if (person === this.person) return;
    this.person = person;
    this.close();
    this.thread?.stop();
    this.thread = null;
    this.unread = 0;
    $("#ask-thread").replaceChildren();
    this._render();
    if (this._member()) this._load();
  }

  _member() {
    const user = this.session.user;
    return Boolean(user && !user.guest);
  }
}
